//! The built-in providers, one folder each. `main` registers them explicitly; nothing else in
//! moat names them.

pub mod codex;
pub mod gemini;
pub mod github;
