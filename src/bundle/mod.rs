//! The bundle: its signed index ([`format`]), its signatures ([`sign`]), writing it
//! ([`writer`]) and reading it back with streaming verification ([`reader`]).

pub mod format;
pub mod indexed;
pub mod reader;
pub mod sign;
pub mod writer;
