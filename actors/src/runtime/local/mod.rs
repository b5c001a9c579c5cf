//! The local runtime: each sandbox is a set of Linux namespaces driven by bubblewrap, with an
//! agent (this same binary, hidden subcommand `__agent`) as its first process.
