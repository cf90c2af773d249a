//! The front end: tokens, the grammar glue and the AST.
pub mod ast;
pub mod lexer;
pub mod parser;
pub mod print;
