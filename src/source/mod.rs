//! Where resources come from. Every source fills the translator's one input struct.

pub mod assembly;
pub mod example;
pub mod files;
pub mod watch;
