//! The record reassembler on arbitrary streams cut at arbitrary points:
//! it must never panic, never hand out a record over the limit, and never
//! grow its buffer far past the limit whatever the markers claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msgsplice_rpc::record::RecordAssembler;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let chunk = cut as usize % 64 + 1;
    let mut asm = RecordAssembler::new(MAX).with_max_fragments(16);
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        while !input.is_empty() {
            match asm.push(&mut input) {
                Ok(Some(record)) => assert!(record.len() <= MAX),
                Ok(None) => {}
                Err(_) => return,
            }
        }
        assert!(asm.buffer_capacity() <= 2 * MAX + 64);
    }
});
