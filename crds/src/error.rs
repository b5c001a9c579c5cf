//! Errors of the CRD crate: template resolution and duration parsing.

/// Why a template could not be resolved or a duration could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A template names a parent (or the sandbox names a template) that does not exist.
    #[error("template {kind} {name:?} not found")]
    TemplateNotFound {
        /// `SandboxTemplate` or `ClusterSandboxTemplate`.
        kind: String,
        /// The missing template's name.
        name: String,
    },
    /// `inheritsFrom` loops back to a template already on the chain.
    #[error("template inheritance cycle: {0}")]
    InheritanceCycle(String),
    /// The chain is longer than [`crate::resolve::MAX_INHERITANCE_DEPTH`].
    #[error("template inheritance deeper than {max} levels: {chain}")]
    InheritanceTooDeep {
        /// The depth limit.
        max: usize,
        /// The chain walked so far, child first.
        chain: String,
    },
    /// A duration string is not valid Go duration syntax.
    #[error("invalid duration {0:?}: expected Go duration syntax such as 30s, 5m, 1h30m")]
    InvalidDuration(String),
    /// A resource quantity is not valid Kubernetes quantity syntax.
    #[error("invalid quantity {0:?}: expected a Kubernetes quantity such as 500m, 2, 512Mi, 10Gi")]
    InvalidQuantity(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
