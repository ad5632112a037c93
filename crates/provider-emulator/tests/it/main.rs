//! End-to-end tests of every emulator over real HTTP on 127.0.0.1.

mod anthropic;
mod bedrock;
mod binary;
mod common;
mod fault_matrix;
mod google;
mod ollama;
mod openai;
