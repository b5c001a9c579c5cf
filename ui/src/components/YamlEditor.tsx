// A YAML editor: a plain <textarea> (so every browser editing key, undo and screen readers
// work) over a highlighted copy of its text, scrolled in step.

import { forwardRef, useImperativeHandle, useMemo, useRef } from "react";
import { highlightYaml } from "../lib/yamlHighlight";

export interface YamlEditorHandle {
  goToLine: (line: number) => void;
}

export const YamlEditor = forwardRef<
  YamlEditorHandle,
  { id: string; value: string; onChange: (v: string) => void; readOnly?: boolean; describedBy?: string; invalid?: boolean }
>(function YamlEditor({ id, value, onChange, readOnly, describedBy, invalid }, ref) {
  const area = useRef<HTMLTextAreaElement>(null);
  const pre = useRef<HTMLPreElement>(null);
  const html = useMemo(() => highlightYaml(value) + "\n", [value]);
  const lines = useMemo(() => value.split("\n").length, [value]);

  useImperativeHandle(ref, () => ({
    goToLine(line: number) {
      const el = area.current;
      if (!el) return;
      const parts = el.value.split("\n");
      const offset = parts.slice(0, Math.max(0, line - 1)).reduce((a, l) => a + l.length + 1, 0);
      el.focus();
      el.setSelectionRange(offset, offset + (parts[line - 1]?.length ?? 0));
    },
  }));

  const sync = () => {
    if (pre.current && area.current) {
      pre.current.scrollTop = area.current.scrollTop;
      pre.current.scrollLeft = area.current.scrollLeft;
    }
  };

  return (
    <div className="yaml-editor">
      <pre className="yaml-gutter" aria-hidden="true">
        {Array.from({ length: lines }, (_, i) => i + 1).join("\n")}
      </pre>
      <div className="yaml-stack">
        <pre ref={pre} className="yaml-highlight" aria-hidden="true" dangerouslySetInnerHTML={{ __html: html }} />
        <textarea
          id={id}
          ref={area}
          className="yaml-input"
          value={value}
          onChange={(e) => onChange(e.target.value)}
          onScroll={sync}
          onKeyDown={(e) => {
            // Tab indents (two spaces) unless Escape was pressed first, so keyboard users can leave.
            if (e.key === "Tab" && !e.shiftKey && !readOnly && !(e.currentTarget.dataset.escaped === "1")) {
              e.preventDefault();
              const el = e.currentTarget;
              const start = el.selectionStart;
              const next = el.value.slice(0, start) + "  " + el.value.slice(el.selectionEnd);
              onChange(next);
              requestAnimationFrame(() => el.setSelectionRange(start + 2, start + 2));
            }
            e.currentTarget.dataset.escaped = e.key === "Escape" ? "1" : "0";
          }}
          readOnly={readOnly}
          spellCheck={false}
          autoCapitalize="off"
          autoComplete="off"
          aria-describedby={describedBy}
          aria-invalid={invalid || undefined}
          wrap="off"
        />
      </div>
    </div>
  );
});
