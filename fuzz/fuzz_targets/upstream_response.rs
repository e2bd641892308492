//! Whatever an upstream sends back (any status, any bytes) decodes to a completion or a typed error, and the winner's
//! text always re-assembles from its SSE pieces.
#![no_main]

use bon_proxy::{server::chunks::split_text, upstream::decode_chat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let status = [200, 201, 400, 404, 429, 500, 502, 503][usize::from(first) % 8];
    if let Ok(c) = decode_chat(status, body) {
        assert!(!c.choices.is_empty());
        let text = c.choices[0].message.text();
        assert_eq!(split_text(&text).concat(), text);
    }
});
