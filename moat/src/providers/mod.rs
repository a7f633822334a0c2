//! The built-in providers, one folder each, and the bundled catalogue of declared (YAML)
//! providers (`catalogue`). `main` registers them explicitly; nothing else in
//! moat names them.

pub mod anthropic;
pub mod aws;
pub mod catalogue;
pub mod claude;
pub mod codex;
pub mod gemini;
pub mod github;
