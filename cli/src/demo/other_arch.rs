//! No demo machine code for this architecture yet.

pub fn add_u64() -> Option<Vec<u8>> {
    None
}

pub const CALLBACK_ADDEND_OFFSET: usize = 0;

pub fn call_then_add_one(_target: usize) -> Option<Vec<u8>> {
    None
}
