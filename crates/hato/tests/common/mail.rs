//! Stored messages: header and body, header values, the Received header.

/// The header section of a stored message (up to the empty line).
pub fn headers(msg: &str) -> &str {
    msg.split("\r\n\r\n").next().unwrap_or("")
}

/// The body of a stored message (after the empty line).
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
}

/// Every occurrence of header `name` (case-insensitive), unfolded, without the name.
pub fn header_values(msg: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in headers(msg).split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_owned());
        }
    }
    out.extend(current);
    out
}

/// The first Received header (hato's own), unfolded.
pub fn received(msg: &str) -> String {
    header_values(msg, "Received")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no Received header in {msg:?}"))
}

/// Whether `received` says `with PROTO` exactly (ESMTPS is not ESMTPSA).
pub fn received_with(received: &str, proto: &str) -> bool {
    let words: Vec<&str> = received.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| w[0] == "with" && w[1].trim_end_matches(';') == proto)
}

/// True when every CR is followed by LF and every LF preceded by CR.
pub fn only_crlf(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

/// Decodes lower- or upper-case hex (as Python's `bytes.hex()` prints it).
pub fn unhex(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    assert!(hex.len().is_multiple_of(2), "odd hex length: {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {hex:?}"))
        })
        .collect()
}

/// [`unhex`] as UTF-8 text.
pub fn unhex_text(hex: &str) -> String {
    String::from_utf8(unhex(hex)).unwrap()
}
