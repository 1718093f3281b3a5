//! The dossier (办件档案) of an instance: one printable page with everything done on it.

pub mod chain;
