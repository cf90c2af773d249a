//! The standard library: Slope modules in the top-level `stdlib/` folder,
//! embedded in the compiler so that `import "linalg"` works anywhere and the
//! library needs no file system.

/// `(module name, source)` for every stdlib module.
pub const MODULES: &[(&str, &str)] = &[
    ("linalg", include_str!("../../stdlib/linalg.slope")),
    ("nn", include_str!("../../stdlib/nn.slope")),
    ("stats", include_str!("../../stdlib/stats.slope")),
    ("optim", include_str!("../../stdlib/optim.slope")),
    ("softsort", include_str!("../../stdlib/softsort.slope")),
    ("random", include_str!("../../stdlib/random.slope")),
    ("implicit", include_str!("../../stdlib/implicit.slope")),
];

pub fn lookup(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
