//! AST printer (placeholder until written).
