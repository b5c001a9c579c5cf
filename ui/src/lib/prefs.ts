// The defaults the create dialog starts from. Kept in the server's `/user/preferences` (under
// `createDefaults`) when it has that route, else in this browser's localStorage.

import { ApiError } from "../api/client";
import { getPreferences, putPreferences } from "../api/endpoints";

export interface CreateDefaults {
  template: string;
  timeout: string;
  idleTimeout: string;
  storageSize: string;
}

export const EMPTY_DEFAULTS: CreateDefaults = { template: "", timeout: "", idleTimeout: "", storageSize: "" };
const LOCAL_KEY = "agenttier.createDefaults";

function local(): CreateDefaults {
  try {
    return { ...EMPTY_DEFAULTS, ...(JSON.parse(localStorage.getItem(LOCAL_KEY) ?? "{}") as Partial<CreateDefaults>) };
  } catch {
    return EMPTY_DEFAULTS;
  }
}

export async function loadDefaults(): Promise<{ defaults: CreateDefaults; stored: "server" | "browser" }> {
  try {
    const prefs = await getPreferences();
    const d = (prefs?.createDefaults ?? {}) as Partial<CreateDefaults>;
    return { defaults: { ...EMPTY_DEFAULTS, ...local(), ...d }, stored: "server" };
  } catch (e) {
    if (e instanceof ApiError && !e.notAvailable) throw e;
    return { defaults: local(), stored: "browser" };
  }
}

export async function saveDefaults(defaults: CreateDefaults): Promise<"server" | "browser"> {
  localStorage.setItem(LOCAL_KEY, JSON.stringify(defaults));
  try {
    const prefs = (await getPreferences()) ?? {};
    await putPreferences({ ...prefs, createDefaults: defaults });
    return "server";
  } catch (e) {
    if (e instanceof ApiError && !e.notAvailable) throw e;
    return "browser";
  }
}
