//! Operations: one function per thing a user asks airlock to do, each taking a plain options
//! struct and returning what happened. The binary only parses arguments into those structs, calls
//! in here and prints the result; nothing below this layer knows about commands.

pub mod create;
