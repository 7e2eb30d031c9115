//! The bundle: its signed index ([`format`](mod@format)), its signatures ([`sign`]), writing it
//! ([`writer`]) and reading it back with streaming verification ([`reader`]).

pub mod bases;
pub mod cosign;
pub mod delta;
pub mod diff;
pub mod format;
mod graph;
pub mod indexed;
pub mod layers;
pub mod reader;
pub mod sign;
pub mod views;
pub mod writer;
