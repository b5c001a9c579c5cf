/** RFC 1123 label: what sandbox and template names must be (contract §4.5). */
export const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
