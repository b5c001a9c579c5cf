// Templates: the list, and a YAML editor with highlighting and field validation. Admins can
// create, save and delete; everyone else reads.

import { useEffect, useMemo, useRef, useState } from "react";
import { stringify } from "yaml";
import { useSession } from "../app";
import { ApiError } from "../api/client";
import { createTemplate, deleteTemplate, listTemplates, replaceTemplate } from "../api/endpoints";
import type { Template, TemplateSpec } from "../api/types";
import { Confirm } from "../components/Dialog";
import { ErrorNote, Loading } from "../components/Notice";
import { useToast } from "../components/Toast";
import { YamlEditor, type YamlEditorHandle } from "../components/YamlEditor";
import { checkTemplateYaml } from "../lib/templateSchema";
import { usePoll } from "../lib/usePoll";

const NEW_TEMPLATE = `name: my-template
spec:
  description: A shell with the workspace at /workspace
  mode: code
  resources:
    requests:
      cpu: 100m
      memory: 128Mi
    limits:
      cpu: "1"
      memory: 512Mi
  storage:
    size: 1Gi
    mountPath: /workspace
  idleTimeout: 30m
  harness:
    shell: /bin/sh
`;

function toYaml(t: Template): string {
  return stringify({ name: t.name, spec: t.spec }, { lineWidth: 0 });
}

export default function TemplatesPage() {
  const { user } = useSession();
  const templates = usePoll(listTemplates, null);
  const [selected, setSelected] = useState<string | null>(null);
  const [isNew, setIsNew] = useState(false);
  const [text, setText] = useState("");
  const [dirty, setDirty] = useState(false);
  const [saving, setSaving] = useState(false);
  const [serverError, setServerError] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const editor = useRef<YamlEditorHandle>(null);
  const toast = useToast();

  const current = templates.data?.find((t) => t.name === selected);

  useEffect(() => {
    if (!selected && !isNew && templates.data?.length) setSelected(templates.data[0].name);
  }, [templates.data, selected, isNew]);

  useEffect(() => {
    if (current && !dirty && !isNew) setText(toYaml(current));
  }, [current, dirty, isNew]);

  const check = useMemo(() => checkTemplateYaml(text, isNew ? undefined : (selected ?? undefined)), [text, isNew, selected]);
  const errors = check.problems.filter((p) => p.severity === "error");

  const choose = (name: string) => {
    if (dirty && !window.confirm("Discard unsaved changes?")) return;
    setIsNew(false);
    setDirty(false);
    setServerError(null);
    setSelected(name);
  };

  const startNew = () => {
    if (dirty && !window.confirm("Discard unsaved changes?")) return;
    setIsNew(true);
    setSelected(null);
    setText(NEW_TEMPLATE);
    setDirty(true);
    setServerError(null);
  };

  const save = async () => {
    if (errors.length > 0 || !check.name || !check.spec) return;
    setSaving(true);
    setServerError(null);
    try {
      if (isNew) await createTemplate(check.name, check.spec as TemplateSpec);
      else await replaceTemplate(check.name, check.spec as TemplateSpec);
      toast(isNew ? `Template ${check.name} created` : `Template ${check.name} saved`);
      setIsNew(false);
      setDirty(false);
      setSelected(check.name);
      await templates.reload();
    } catch (e) {
      setServerError(e instanceof ApiError ? e.display : String(e));
    } finally {
      setSaving(false);
    }
  };

  const remove = async () => {
    if (!selected) return;
    setConfirmDelete(false);
    try {
      await deleteTemplate(selected);
      toast(`Template ${selected} deleted`);
      setSelected(null);
      setDirty(false);
      await templates.reload();
    } catch (e) {
      setServerError(e instanceof ApiError ? e.display : String(e));
    }
  };

  return (
    <section aria-labelledby="templates-title">
      <div className="page-head">
        <div>
          <h1 id="templates-title">Templates</h1>
          <p className="muted">
            ClusterSandboxTemplates every sandbox starts from.{" "}
            {!user.isAdmin && "Only administrators can change them."}
          </p>
        </div>
        {user.isAdmin && (
          <div className="head-actions">
            <button type="button" className="primary" onClick={startNew}>
              New template
            </button>
          </div>
        )}
      </div>
      <ErrorNote>{templates.error}</ErrorNote>
      {templates.loading && !templates.data ? (
        <Loading />
      ) : (
        <div className="split">
          <nav aria-label="Templates" className="template-list">
            <ul>
              {templates.data?.map((t) => (
                <li key={t.name}>
                  <button
                    type="button"
                    className={t.name === selected && !isNew ? "item current" : "item"}
                    aria-current={t.name === selected && !isNew ? "true" : undefined}
                    onClick={() => choose(t.name)}
                  >
                    <strong>{t.name}</strong>
                    <span className="muted small">
                      {t.spec?.mode === "agent" ? "agent · " : ""}
                      {t.description || t.image || "no description"}
                    </span>
                  </button>
                </li>
              ))}
              {isNew && (
                <li>
                  <span className="item current">
                    <strong>{check.name || "new template"}</strong>
                    <span className="muted small">not saved yet</span>
                  </span>
                </li>
              )}
            </ul>
          </nav>
          {(current || isNew) && (
            <div className="editor-pane">
              <div className="editor-head">
                <label htmlFor="template-yaml">
                  {isNew ? "New template" : `Template ${selected}`} (YAML)
                  {dirty && <span className="badge">unsaved</span>}
                </label>
                {user.isAdmin && (
                  <div className="head-actions">
                    {!isNew && (
                      <button type="button" className="danger" onClick={() => setConfirmDelete(true)}>
                        Delete
                      </button>
                    )}
                    {dirty && (
                      <button
                        type="button"
                        onClick={() => {
                          setDirty(false);
                          setServerError(null);
                          if (isNew) {
                            setIsNew(false);
                            setSelected(templates.data?.[0]?.name ?? null);
                          } else if (current) setText(toYaml(current));
                        }}
                      >
                        Discard
                      </button>
                    )}
                    <button
                      type="button"
                      className="primary"
                      disabled={saving || errors.length > 0 || !dirty}
                      onClick={() => void save()}
                    >
                      {saving ? "Saving…" : isNew ? "Create" : "Save"}
                    </button>
                  </div>
                )}
              </div>
              <YamlEditor
                ref={editor}
                id="template-yaml"
                value={text}
                onChange={(v) => {
                  setText(v);
                  setDirty(true);
                }}
                readOnly={!user.isAdmin}
                describedBy="template-problems"
                invalid={errors.length > 0}
              />
              <div id="template-problems" className="problems" aria-live="polite">
                {check.problems.length === 0 ? (
                  <p className="ok">No problems found.</p>
                ) : (
                  <ul>
                    {check.problems.map((p, i) => (
                      <li key={i} className={p.severity}>
                        <button
                          type="button"
                          className="linkish"
                          onClick={() => p.line && editor.current?.goToLine(p.line)}
                        >
                          {p.line ? `Line ${p.line}: ` : ""}
                          {p.path && <code>{p.path}</code>} {p.message}
                        </button>
                      </li>
                    ))}
                  </ul>
                )}
              </div>
              <ErrorNote>{serverError}</ErrorNote>
            </div>
          )}
        </div>
      )}
      {confirmDelete && selected && (
        <Confirm
          title={`Delete template ${selected}?`}
          message={<p>Sandboxes already created from it keep running; new ones cannot use it.</p>}
          action="Delete template"
          danger
          onCancel={() => setConfirmDelete(false)}
          onConfirm={() => void remove()}
        />
      )}
    </section>
  );
}
