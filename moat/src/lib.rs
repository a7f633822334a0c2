//! moat: run commands and AI agents in containers with credentials injected on the wire.
//!
//! The binary (`main.rs`) registers providers into a [`provider::Registry`] and hands it to the
//! [`cli`]. Everything else is a library module with one job each; see the README's tour.

pub mod cli;
pub(crate) mod config;
pub mod credential;
pub mod declared;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
pub(crate) mod http;
pub mod plugin;
pub mod provider;
pub mod providers;
pub mod proxy;
pub mod run;
pub mod runtime;
