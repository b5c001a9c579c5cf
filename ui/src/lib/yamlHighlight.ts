// A small line-based YAML highlighter for the template editor: keys, strings, numbers,
// booleans/null, comments and list dashes become <span class="y-…">; everything is escaped.

const ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
export const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ESC[c]);

const span = (cls: string, text: string) => (text ? `<span class="y-${cls}">${escapeHtml(text)}</span>` : "");

function scalar(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return escapeHtml(text);
  const lead = text.slice(0, text.indexOf(trimmed));
  const tail = text.slice(lead.length + trimmed.length);
  let cls = "str";
  if (/^(true|false|yes|no|on|off)$/i.test(trimmed)) cls = "bool";
  else if (/^(null|~)$/i.test(trimmed)) cls = "null";
  else if (/^[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)) cls = "num";
  else if (/^[|>][-+]?\d*$/.test(trimmed)) cls = "punct";
  else if (/^[[{]/.test(trimmed)) cls = "flow";
  return escapeHtml(lead) + span(cls, trimmed) + escapeHtml(tail);
}

/** Splits off a trailing comment that is not inside quotes. */
function splitComment(text: string): [string, string] {
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#" && (i === 0 || /\s/.test(text[i - 1]))) return [text.slice(0, i), text.slice(i)];
  }
  return [text, ""];
}

const KEY = /^(\s*)(-\s+)?((?:"[^"]*"|'[^']*'|[^\s#'"][^:#]*?))(\s*:)(\s|$)/;
const ITEM = /^(\s*)(-)(\s|$)/;

export function highlightLine(line: string): string {
  const [code, comment] = splitComment(line);
  let out = "";
  const key = KEY.exec(code);
  if (key) {
    out += escapeHtml(key[1]) + (key[2] ? span("punct", key[2]) : "") + span("key", key[3]) + span("punct", key[4]);
    out += scalar(code.slice(key[0].length - key[5].length));
  } else {
    const item = ITEM.exec(code);
    if (item) out += escapeHtml(item[1]) + span("punct", item[2]) + scalar(code.slice(item[1].length + 1));
    else if (/^\s*(---|\.\.\.)\s*$/.test(code)) out += span("punct", code);
    else out += scalar(code);
  }
  return out + span("comment", comment);
}

export function highlightYaml(text: string): string {
  return text.split("\n").map(highlightLine).join("\n");
}
