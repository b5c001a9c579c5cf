// The JSON shapes of the wire contract (CONTRACT.md §4, §5) that the UI reads and writes.

/** §4.1 SandboxSummary. */
export interface Sandbox {
  sandboxId: string;
  name: string;
  namespace: string;
  status: "" | "Creating" | "Running" | "Stopped" | "Error" | "Deleting" | string;
  podName: string;
  pvcName: string;
  templateRef: string;
  mode: string;
  createdAt: string;
  message: string;
  createdBy?: { email: string; displayName: string };
  lastActivityAt?: string;
  /** Status conditions (an AgentTier addition): `ToolsReady`, `OnStartHookSucceeded`, `Ready`. */
  conditions?: Condition[];
}

/** One status condition. */
export interface Condition {
  type: string;
  status: "True" | "False" | string;
  reason: string;
  message: string;
}

/** §4.2 create request. */
export interface CreateSandboxRequest {
  name: string;
  namespace?: string;
  templateRef: { name: string; kind?: string };
  timeout?: string;
  idleTimeout?: string;
  storage?: { size?: string };
}

/** §4.15 Template. */
export interface Template {
  name: string;
  description: string;
  image: string;
  resourceVersion: string;
  spec: TemplateSpec;
}

export interface ResourceList {
  cpu?: string;
  memory?: string;
  [k: string]: string | undefined;
}

/** §7.3, the parts the UI looks at; everything else is carried as-is. */
export interface TemplateSpec {
  description?: string;
  mode?: string;
  image?: { repository?: string };
  resources?: { requests?: ResourceList; limits?: ResourceList };
  storage?: { size?: string; mountPath?: string };
  timeout?: string;
  idleTimeout?: string;
  [k: string]: unknown;
}

/** §4.13 */
export interface CurrentUser {
  sub: string;
  email: string;
  name: string;
  groups: string[] | null;
  isAdmin: boolean;
}

/** §4.10 */
export interface FileEntry {
  name: string;
  size: number;
  isDir: boolean;
  mode: string;
  modifiedAt: number;
}

export interface DirListing {
  path: string;
  entries: FileEntry[];
}

/** §4.11 */
export interface ForwardedPort {
  port: number;
  protocol: string;
  previewUrl?: string;
  internalUrl?: string;
}

/** §4.17 */
export interface Policy {
  maxSandboxesPerUser?: number;
  maxSandboxesTotal?: number;
  maxCpu?: string;
  maxMemory?: string;
  maxStorage?: string;
  maxTimeout?: string;
  maxIdleTimeout?: string;
  allowedTemplates?: string[];
  approvedRegistries?: string[];
  maxAgentSandboxes?: number;
  allowedAgentImages?: string[];
  maxConcurrentInvokesPerSandbox?: number;
  description?: string;
}

export interface PoliciesResponse {
  cluster: Policy | null;
  namespaces: { namespace: string; policy: Policy }[] | null;
}

export interface Violation {
  code: string;
  message: string;
}

/** §4.18 */
export interface AuditEvent {
  timestamp: string;
  eventType: string;
  sandboxId: string;
  sandboxName: string;
  namespace: string;
  userEmail: string;
  /** Who acted (this server's addition to the contract's shape). */
  actor?: string;
  /** Normal or Warning. */
  type?: string;
  details: { reason?: string; [k: string]: unknown };
}

export interface UsageAnalytics {
  total_sandboxes?: number;
  status_breakdown?: Record<string, number>;
  template_breakdown?: Record<string, number>;
  avg_startup_ms?: number;
  startup_sample_count?: number;
}

export interface CostAnalytics {
  running_sandboxes?: number;
  stopped_sandboxes?: number;
  total_hourly_compute?: number;
  total_hourly_storage?: number;
  total_estimated_monthly?: number;
  per_template?: { template: string; hourly_cost: number; count: number }[] | null;
}

export interface PoolStatus {
  template: string;
  desiredCount?: number;
  readyCount?: number;
  pendingCount?: number;
}

export interface WarmPoolStatus {
  pools?: PoolStatus[];
}

/** §4.14 */
export interface ApiKeyMeta {
  id: string;
  userId: string;
  name: string;
  sandboxId?: string;
  actionGroups?: string[] | null;
  createdAt: string;
  expiresAt?: string | null;
  lastUsedAt?: string | null;
}

export interface MintedApiKey extends ApiKeyMeta {
  key: string;
  warning?: string;
}

/** §5.2 terminal frames. */
export interface TerminalFrame {
  type: string;
  data?: string;
  stream?: string;
  cols?: number;
  rows?: number;
  reason?: string;
  code?: number;
  message?: string;
  ts?: number;
  sessionId?: string;
  [k: string]: unknown;
}
