//! Hostile grants: runtime. See tests/hostile.rs.

#[allow(unused_imports)]
use crate::{common, operator::*};
