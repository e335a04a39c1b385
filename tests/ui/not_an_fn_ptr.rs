// `ExecBlock::func` makes fn pointers of `extern` ABIs only: a Rust-ABI fn
// pointer has no stable calling convention.
fn main() {
    let mut block = wxthunk::Block::new(1).unwrap();
    block.as_mut_slice()[0] = 0xc3;
    let code = block.exec().unwrap();
    let f = unsafe { code.func::<fn()>(0) };
    drop(f);
}
