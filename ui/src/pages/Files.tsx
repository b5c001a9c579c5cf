// A sandbox's files: folders with breadcrumbs, download a file, a folder as zip or the whole
// workspace, and upload by drag and drop (or the file picker, for keyboards).

import { useCallback, useEffect, useRef, useState, type DragEvent } from "react";
import { ApiError } from "../api/client";
import { downloadArchive, downloadFile, getSandbox, listDir, uploadFile } from "../api/endpoints";
import type { DirListing, Sandbox } from "../api/types";
import { ErrorNote, Loading, StatusBadge, Unavailable } from "../components/Notice";
import { useToast } from "../components/Toast";
import { formatBytes } from "../lib/quantity";
import { Link, navigate, useQuery } from "../lib/router";
import { formatDateTime } from "../lib/time";

const WORKSPACE = "/workspace";

export function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name}`;
}

function FileIcon({ dir = false }: { dir?: boolean }) {
  return (
    <svg className={dir ? "icon folder" : "icon file"} viewBox="0 0 16 16" aria-hidden="true" focusable="false">
      {dir ? (
        <path d="M1.5 3.5h5l1.5 1.5h6.5v8h-13z" />
      ) : (
        <path d="M3.5 1.5h6l3 3v10h-9zM9.5 1.5v3h3" />
      )}
    </svg>
  );
}

export function crumbs(path: string): { name: string; path: string }[] {
  const parts = path.split("/").filter(Boolean);
  const out = [{ name: "/", path: "/" }];
  parts.forEach((p, i) => out.push({ name: p, path: `/${parts.slice(0, i + 1).join("/")}` }));
  return out;
}

async function saveResponse(response: Response, fallbackName: string): Promise<void> {
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? fallbackName;
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

export default function FilesPage({ id }: { id: string }) {
  const query = useQuery();
  const path = query.get("path") || WORKSPACE;
  const [sandbox, setSandbox] = useState<Sandbox | null>(null);
  const [listing, setListing] = useState<DirListing | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [unavailable, setUnavailable] = useState(false);
  const [loading, setLoading] = useState(true);
  const [dragging, setDragging] = useState(false);
  const [uploading, setUploading] = useState<string | null>(null);
  const picker = useRef<HTMLInputElement>(null);
  const toast = useToast();
  const base = `/sandboxes/${encodeURIComponent(id)}/files`;

  const go = (p: string) => navigate(`${base}?path=${encodeURIComponent(p)}`);

  const load = useCallback(async () => {
    try {
      const l = await listDir(id, path);
      setListing(l);
      setError(null);
    } catch (e) {
      if (e instanceof ApiError && e.notAvailable) setUnavailable(true);
      else setError(e instanceof ApiError ? e.display : String(e));
    } finally {
      setLoading(false);
    }
  }, [id, path]);

  useEffect(() => {
    getSandbox(id)
      .then(setSandbox)
      .catch(() => {});
  }, [id]);

  useEffect(() => {
    setLoading(true);
    void load();
  }, [load]);

  const download = async (name: string) => {
    try {
      await saveResponse(await downloadFile(id, joinPath(listing?.path ?? path, name)), name);
    } catch (e) {
      toast(`Download failed: ${e instanceof ApiError ? e.display : String(e)}`, "error");
    }
  };

  const archive = async (dir: string) => {
    try {
      await saveResponse(await downloadArchive(id, dir), `${id}.zip`);
    } catch (e) {
      toast(`Download failed: ${e instanceof ApiError ? e.display : String(e)}`, "error");
    }
  };

  const upload = async (files: FileList | File[]) => {
    const list = Array.from(files);
    if (list.length === 0) return;
    const dir = listing?.path ?? path;
    for (const file of list) {
      setUploading(file.name);
      try {
        await uploadFile(id, joinPath(dir, file.name), file);
      } catch (e) {
        toast(`Upload of ${file.name} failed: ${e instanceof ApiError ? e.display : String(e)}`, "error");
        setUploading(null);
        await load();
        return;
      }
    }
    setUploading(null);
    toast(list.length === 1 ? `Uploaded ${list[0].name}` : `Uploaded ${list.length} files`);
    await load();
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    void upload(e.dataTransfer.files);
  };

  const current = listing?.path ?? path;
  const entries = [...(listing?.entries ?? [])].sort((a, b) =>
    a.isDir === b.isDir ? a.name.localeCompare(b.name) : a.isDir ? -1 : 1,
  );
  const inWorkspace = current === WORKSPACE || current.startsWith(`${WORKSPACE}/`);

  return (
    <section aria-labelledby="files-title">
      <div className="page-head">
        <div>
          <h1 id="files-title">
            Files of {id} {sandbox && <StatusBadge status={sandbox.status} />}
          </h1>
          <nav aria-label="Folder path" className="breadcrumbs">
            <ol>
              {crumbs(current).map((c, i, all) => (
                <li key={c.path}>
                  {i === all.length - 1 ? (
                    <span aria-current="location">{c.name}</span>
                  ) : (
                    <Link href={`${base}?path=${encodeURIComponent(c.path)}`}>{c.name}</Link>
                  )}
                </li>
              ))}
            </ol>
          </nav>
        </div>
        <div className="head-actions">
          <Link className="button" href={`/sandboxes/${encodeURIComponent(id)}/terminal`}>
            Terminal
          </Link>
          <button type="button" onClick={() => void archive(current)} disabled={!inWorkspace || unavailable}>
            Download folder (.zip)
          </button>
          <button type="button" onClick={() => void archive(WORKSPACE)} disabled={unavailable}>
            Download workspace
          </button>
        </div>
      </div>
      {unavailable ? (
        <Unavailable what="Browsing files" endpoint={`GET /api/v1/sandboxes/${id}/files/`} />
      ) : (
        <>
          <ErrorNote>{error}</ErrorNote>
          <div
            className={dragging ? "dropzone dragging" : "dropzone"}
            onDragOver={(e) => {
              e.preventDefault();
              setDragging(true);
            }}
            onDragLeave={() => setDragging(false)}
            onDrop={onDrop}
            data-testid="dropzone"
          >
            <p>
              {uploading ? (
                <span role="status">Uploading {uploading}…</span>
              ) : (
                <>
                  Drop files here to upload them to <code>{current}</code>, or{" "}
                  <button type="button" className="linkish" onClick={() => picker.current?.click()}>
                    choose files
                  </button>
                  .
                </>
              )}
            </p>
            <input
              ref={picker}
              type="file"
              multiple
              hidden
              aria-label="Files to upload"
              onChange={(e) => {
                if (e.target.files) void upload(e.target.files);
                e.target.value = "";
              }}
            />
          </div>
          {loading && !listing ? (
            <Loading />
          ) : (
            <table className="table files">
              <caption className="sr-only">Contents of {current}</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col" className="num">
                    Size
                  </th>
                  <th scope="col">Modified</th>
                  <th scope="col">Mode</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {current !== "/" && (
                  <tr>
                    <td colSpan={5}>
                      <button type="button" className="linkish" onClick={() => go(crumbs(current).slice(-2)[0].path)}>
                        ↑ Parent folder
                      </button>
                    </td>
                  </tr>
                )}
                {entries.length === 0 && (
                  <tr>
                    <td colSpan={5} className="muted">
                      This folder is empty.
                    </td>
                  </tr>
                )}
                {entries.map((e) => (
                  <tr key={e.name}>
                    <td>
                      {e.isDir ? (
                        <button type="button" className="linkish" onClick={() => go(joinPath(current, e.name))}>
                          <FileIcon dir />
                          {e.name}/
                        </button>
                      ) : (
                        <span>
                          <FileIcon />
                          {e.name}
                        </span>
                      )}
                    </td>
                    <td className="num">{e.isDir ? "—" : formatBytes(e.size)}</td>
                    <td>{formatDateTime(e.modifiedAt * 1000)}</td>
                    <td>
                      <code>{e.mode}</code>
                    </td>
                    <td className="row-actions">
                      {e.isDir ? (
                        inWorkspace && (
                          <button
                            type="button"
                            className="small"
                            onClick={() => void archive(joinPath(current, e.name))}
                            aria-label={`Download folder ${e.name} as zip`}
                          >
                            Zip
                          </button>
                        )
                      ) : (
                        <button
                          type="button"
                          className="small"
                          onClick={() => void download(e.name)}
                          aria-label={`Download ${e.name}`}
                        >
                          Download
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
