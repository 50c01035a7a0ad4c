//! Small hand-written parsers for GUIDs, email addresses and host names.
//!
//! No `regex`: it would add hundreds of KB to the browser bundle.

use std::net::IpAddr;

/// Why a string is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuidError {
    /// Nothing was entered.
    Empty,
    /// A character that is neither a hex digit nor a hyphen, with its 1-based position.
    BadChar(char, usize),
    /// The wrong number of hex digits.
    Length(usize),
    /// 32 hex digits, but the hyphens are missing or misplaced.
    Hyphens,
    /// It looks like a domain name (`contoso.onmicrosoft.com`), not an ID.
    DomainName,
    /// It is an email address (a sign-in name or the mailbox), not an ID.
    EmailAddress,
    /// Not a GUID alone, but text holding one (lower case): an endpoint URL
    /// with the tenant ID in it, an Application ID URI (`api://…`), or the
    /// ID copied with its label.
    Within(String),
    /// Text holding this many different GUIDs; which one is meant is not
    /// guessed.
    Several(usize),
}

/// The GUIDs in 8-4-4-4-12 form inside a text, each once, in order; a run
/// of hex digits and hyphens longer than one is not one.
pub fn guids_within(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let part = |b: u8| b.is_ascii_hexdigit() || b == b'-';
    let mut found: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for start in 0..bytes.len().saturating_sub(35) {
        let window = &bytes[start..start + 36];
        let shaped = window.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
        let alone = (start == 0 || !part(bytes[start - 1]))
            && bytes.get(start + 36).is_none_or(|&b| !part(b));
        if shaped && alone {
            let guid = String::from_utf8_lossy(window).to_ascii_lowercase();
            if seen.insert(guid.clone()) {
                found.push(guid);
            }
        }
    }
    found
}

/// Canonical form of a GUID-ish input: trimmed, braces removed, lower case.
///
/// Applying it twice gives the same result as applying it once.
pub fn normalize_guid(input: &str) -> String {
    let mut s = input.trim();
    loop {
        let stripped = s
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .map(str::trim);
        match stripped {
            Some(inner) => s = inner,
            None => break,
        }
    }
    s.to_ascii_lowercase()
}

/// Checks a GUID in the 8-4-4-4-12 form, after [`normalize_guid`].
pub fn check_guid(input: &str) -> Result<String, GuidError> {
    let s = normalize_guid(input);
    if s.is_empty() {
        return Err(GuidError::Empty);
    }
    if s.len() > 36 {
        let within = guids_within(&s);
        match within.len() {
            0 => {}
            1 => return Err(GuidError::Within(within[0].clone())),
            n => return Err(GuidError::Several(n)),
        }
    }
    if s.contains('@') && check_email(&s).is_ok() {
        return Err(GuidError::EmailAddress);
    }
    if s.contains('.') && s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains(' ') {
        return Err(GuidError::DomainName);
    }
    for (i, c) in s.chars().enumerate() {
        if !(c.is_ascii_hexdigit() || c == '-') {
            return Err(GuidError::BadChar(c, i + 1));
        }
    }
    let digits = s.chars().filter(char::is_ascii_hexdigit).count();
    if digits != 32 {
        return Err(GuidError::Length(digits));
    }
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] {
        return Err(GuidError::Hyphens);
    }
    Ok(s)
}

/// Whether a string is shaped like a GUID once normalised.
pub fn is_guid(input: &str) -> bool {
    check_guid(input).is_ok()
}

/// Why a string is not a usable email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailError {
    /// Nothing was entered.
    Empty,
    /// Spaces, tabs or line breaks inside.
    Whitespace,
    /// A character that shows as nothing ([`invisible_char`]), pasted along
    /// with the address: it looks right, and no server knows it.
    Invisible(char),
    /// No `@`, or more than one.
    AtCount(usize),
    /// Nothing before the `@`.
    NoLocalPart,
    /// The name before the `@` starts or ends with a dot, or has two in a
    /// row (`ann.@example.org`): not a dot-atom (RFC 5322 3.4.1), so no
    /// server takes it.
    LocalDots,
    /// The name before the `@` is longer than the 64 bytes of RFC 5321
    /// 4.5.3.1.1; its length in bytes.
    LocalTooLong(usize),
    /// The part after the `@` has no dot (`name@localhost`).
    NoDot,
    /// The part after the `@` is not a domain name, and why.
    BadDomain(HostError),
    /// An IP address after the `@` (`name@10.0.0.1`): a top-level domain is
    /// never all digits (RFC 3696 2), so it is no domain name. So is an
    /// address literal (`name@[10.0.0.1]`, `name@[IPv6:::1]`, RFC 5321
    /// 4.1.3), which names a server, not a domain Exchange delivers to.
    IpAddress,
    /// Longer than 254 characters.
    TooLong,
    /// A GUID (an ID from the app registration) where an address goes.
    Guid,
    /// An address with more around it, as it gets copied: `Ann <ann@…>`,
    /// `<ann@…>`, `mailto:ann@…`, in quotes, or with Outlook's `;` after
    /// it. Holds the address alone.
    Wrapped(String),
}

/// The pairs of quotes a value gets copied in: straight, single and curly.
pub const QUOTES: [(char, char); 3] = [('"', '"'), ('\'', '\''), ('“', '”')];

/// `text` without the first of `pairs` that opens and closes it, if one does.
pub fn inside<'a>(text: &'a str, pairs: &[(char, char)]) -> Option<&'a str> {
    pairs
        .iter()
        .find_map(|&(open, close)| text.strip_prefix(open)?.strip_suffix(close))
}

/// The address alone inside text copied with more around it (see
/// [`EmailError::Wrapped`]), when that is what the text is.
fn unwrapped_address(s: &str) -> Option<String> {
    let mut t = s.trim().trim_end_matches([';', ',']).trim_end();
    if let Some(inner) = t
        .strip_suffix('>')
        .and_then(|u| u.rsplit_once('<'))
        .map(|(_, a)| a)
    {
        t = inner.trim();
    }
    if t.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        t = t[7..].split('?').next().unwrap_or_default();
    }
    for pair in QUOTES {
        if let Some(inner) = inside(t, &[pair]) {
            t = inner.trim();
        }
    }
    (t != s.trim() && check_bare_email(t).is_ok()).then(|| t.to_string())
}

/// Checks an email address for the syntax SMTP servers accept in practice.
pub fn check_email(input: &str) -> Result<(), EmailError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(EmailError::Empty);
    }
    if !s.contains('@') && is_guid(s) {
        return Err(EmailError::Guid);
    }
    if s.contains(['<', ':', '"', '\'', '“', ';', ',']) {
        if let Some(address) = unwrapped_address(s) {
            return Err(EmailError::Wrapped(address));
        }
    }
    check_bare_email(s)
}

/// [`check_email`] without looking for what was copied around the address:
/// it never calls itself, whatever the input.
fn check_bare_email(s: &str) -> Result<(), EmailError> {
    if s.is_empty() {
        return Err(EmailError::Empty);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(EmailError::Whitespace);
    }
    if let Some(c) = invisible_char(s) {
        return Err(EmailError::Invisible(c));
    }
    if s.chars().count() > 254 {
        return Err(EmailError::TooLong);
    }
    let ats = s.matches('@').count();
    if ats != 1 {
        return Err(EmailError::AtCount(ats));
    }
    let (local, domain) = s.split_once('@').unwrap_or_default();
    if local.is_empty() {
        return Err(EmailError::NoLocalPart);
    }
    if local.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
            )
    }) {
        return Err(EmailError::NoLocalPart);
    }
    if local.len() > 64 {
        return Err(EmailError::LocalTooLong(local.len()));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::LocalDots);
    }
    // A domain beyond ASCII (an international domain name, RFC 6531) keeps
    // the rules of its labels; the server checks the rest (IDNA) with lettre.
    if domain.starts_with('[') && domain.ends_with(']') {
        return Err(EmailError::IpAddress);
    }
    let shape: String = domain
        .chars()
        .map(|c| if c.is_ascii() { c } else { 'a' })
        .collect();
    if !domain.contains('.') {
        return Err(EmailError::NoDot);
    }
    if domain.ends_with('.') {
        return Err(EmailError::BadDomain(HostError::BadLabel));
    }
    check_host_name(&shape).map_err(EmailError::BadDomain)?;
    // No dot at the end (refused above), so the last label is the top.
    let top = shape.rsplit('.').next().unwrap_or_default();
    if top.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmailError::IpAddress);
    }
    Ok(())
}

/// Why a string is not a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Nothing was entered.
    Empty,
    /// A `{placeholder}` from the catalogue was not replaced.
    Placeholder,
    /// A scheme or path was pasted (`smtp://…`, `host/…`).
    UrlPasted,
    /// A port was pasted into the host (`host:587`).
    PortPasted,
    /// A character not allowed in a host name.
    BadChar(char),
    /// An empty label, or one starting or ending with a hyphen, or over 63 characters.
    BadLabel,
    /// Longer than 253 characters.
    TooLong,
}

/// Checks a DNS host name (letters, digits, hyphens, dots).
pub fn check_host_name(input: &str) -> Result<(), HostError> {
    let s = input.trim().trim_end_matches('.');
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if s.contains('{') || s.contains('}') {
        return Err(HostError::Placeholder);
    }
    if s.contains("://") || s.contains('/') {
        return Err(HostError::UrlPasted);
    }
    if let Some((_, port)) = s.rsplit_once(':') {
        if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) {
            return Err(HostError::PortPasted);
        }
    }
    if s.len() > 253 {
        return Err(HostError::TooLong);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(HostError::BadChar(c));
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::BadLabel);
        }
    }
    Ok(())
}

/// Parses an IP literal, with or without IPv6 brackets.
pub fn parse_ip(input: &str) -> Option<IpAddr> {
    let s = input.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// Checks a host: a host name or an IP literal.
pub fn check_host(input: &str) -> Result<(), HostError> {
    if parse_ip(input).is_some() {
        return Ok(());
    }
    check_host_name(input)
}

/// Whether a host is a loopback address literal (`127.0.0.0/8`, `::1`). Security
/// decisions use this, not the name `localhost`, which DNS or a hosts file may
/// point anywhere.
pub fn is_loopback_address(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    parse_ip(h).is_some_and(|ip| ip.is_loopback())
}

/// The host of a URL's `host[:port]` part: `[::1]:80` gives `::1`, `a.example:443` gives `a.example`.
pub fn authority_host(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
}

/// Whether a host is this machine: `localhost` or a loopback address (for hints only).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    parse_ip(&h).is_some_and(|ip| ip.is_loopback())
}

/// Whether a string holds a CR or LF, which would let it inject mail headers.
pub fn has_line_break(s: &str) -> bool {
    s.contains('\r') || s.contains('\n')
}

/// Why a name may not hold a mark that shows the text after it in another
/// order (U+202A to U+202E, U+2066 to U+2069), when it holds one: with one, a
/// name "Invoice\u{202E}fdp.exe" shows as "Invoiceexe.pdf". The marks
/// right-to-left text needs within a name (U+200E, U+200F) stay allowed.
pub fn reordering_mark(label: &str, s: &str) -> Option<String> {
    let c = s
        .chars()
        .find(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))?;
    Some(format!(
        "The {label} holds the invisible mark U+{:04X}, which shows the text after it in another order than it is written; type the {label} again without it.",
        c as u32
    ))
}

/// Why a name may not hold a character that shows as nothing, when it holds
/// one: the zero width space (U+200B), the soft hyphen (U+00AD), the word
/// joiner and invisible operators (U+2060 to U+2064), the byte order mark
/// (U+FEFF), the Mongolian vowel separator (U+180E) and the Hangul fillers
/// (U+115F, U+1160, U+3164, U+FFA0). With one, "Scanner\u{200B}" looked like
/// "Scanner", past the rule that names differ, and a name of one alone was
/// blank. The joiners that scripts and emoji need (U+200C, U+200D) stay
/// allowed.
pub fn invisible_mark(label: &str, s: &str) -> Option<String> {
    let c = invisible_char(s)?;
    Some(format!(
        "The {label} holds U+{:04X}, a character that shows as nothing, so the {label} could look like another or blank; type the {label} again without it.",
        c as u32
    ))
}

/// `s` without the characters that show as nothing ([`invisible_char`]).
pub fn without_invisible(s: &str) -> String {
    s.chars().filter(|c| !is_invisible(*c)).collect()
}

/// The first character of `s` that shows as nothing (see
/// [`invisible_mark`]); pasted from a web page or a chat, one makes an
/// address or a secret that looks right and is not.
pub fn invisible_char(s: &str) -> Option<char> {
    s.chars().find(|c| is_invisible(*c))
}

/// Whether `c` shows as nothing (see [`invisible_mark`]).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}' | '\u{115F}' | '\u{1160}' | '\u{180E}' | '\u{200B}' | '\u{2060}'
            ..='\u{2064}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn guid_normalisation_tolerates_braces_space_and_case() {
        assert_eq!(
            check_guid("  {0B4F1C2A-1234-4ABC-9DEF-0123456789AB} ").unwrap(),
            "0b4f1c2a-1234-4abc-9def-0123456789ab"
        );
        assert_eq!(normalize_guid("{{ x }}"), "x");
        assert_eq!(
            normalize_guid(&normalize_guid(" {A} ")),
            normalize_guid(" {A} ")
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn deeply_nested_wrappers_are_read_without_recursion() {
        // A JSON recipient may be megabytes: each pair of quotes or
        // brackets used to cost a stack frame.
        let address = format!("{}@{}", "ann", "example.org");
        for (open, close) in [("\"", "\""), ("<", ">"), ("'", "'")] {
            let nested = format!("{}{address}{}", open.repeat(200_000), close.repeat(200_000));
            assert!(check_email(&nested).is_err());
            assert!(check_guid(&nested).is_err());
        }
        let url = format!(
            "{}https://example.org/x{}",
            "<".repeat(200_000),
            ">".repeat(200_000)
        );
        assert!(crate::webhooks::check_url(&url).is_err());
        // A long pasted list is counted: each GUID is looked up in a set,
        // where comparing it with every other took seconds for 30,000.
        let many: String = (0..30_000u32)
            .map(|i| format!("{i:08x}-0000-4000-8000-000000000000 "))
            .collect();
        assert_eq!(check_guid(&many), Err(GuidError::Several(30_000)));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn guid_errors_are_precise() {
        assert_eq!(check_guid(""), Err(GuidError::Empty));
        assert_eq!(
            check_guid("0b4f1c2a-1234-4abc-9def-0123456789a"),
            Err(GuidError::Length(31))
        );
        assert_eq!(
            check_guid("0b4f1c2a-1234-4abc-9def-0123456789abc"),
            Err(GuidError::Length(33))
        );
        assert_eq!(
            check_guid("0b4f1c2a-1234-4abc-9def-0123456789ag"),
            Err(GuidError::BadChar('g', 36))
        );
        assert_eq!(
            check_guid("0b4f1c2a12344abc-9def-0123456789ab"),
            Err(GuidError::Hyphens)
        );
        assert_eq!(
            check_guid("0b4f1c2a123-44abc-9def-0123456789ab"),
            Err(GuidError::Hyphens)
        );
        assert_eq!(
            check_guid("contoso.onmicrosoft.com"),
            Err(GuidError::DomainName)
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn emails() {
        let ok = format!("{}@{}", "mailer", "contoso.com");
        assert_eq!(check_email(&ok), Ok(()));
        assert_eq!(check_email(""), Err(EmailError::Empty));
        assert_eq!(check_email("mailer"), Err(EmailError::AtCount(0)));
        assert_eq!(
            check_email(&format!("a{}b{}c.com", '@', '@')),
            Err(EmailError::AtCount(2))
        );
        assert_eq!(
            check_email(&format!("{}@{}", "", "contoso.com")),
            Err(EmailError::NoLocalPart)
        );
        assert_eq!(
            check_email(&format!("{}@{}", "mailer", "contoso")),
            Err(EmailError::NoDot)
        );
        // Each way the domain is not one is told apart.
        for (domain, why) in [
            (
                "exa_mple.org",
                EmailError::BadDomain(HostError::BadChar('_')),
            ),
            ("-example.org", EmailError::BadDomain(HostError::BadLabel)),
            ("example..org", EmailError::BadDomain(HostError::BadLabel)),
            // lettre, which sends it, refuses the root's dot at the end.
            ("example.org.", EmailError::BadDomain(HostError::BadLabel)),
            ("10.0.0.1", EmailError::IpAddress),
            ("contoso.com\u{200B}", EmailError::Invisible('\u{200B}')),
            ("contoso\u{AD}.com", EmailError::Invisible('\u{AD}')),
            ("[10.0.0.1]", EmailError::IpAddress),
            ("[IPv6:::1]", EmailError::IpAddress),
        ] {
            let address = format!("{}@{}", "mailer", domain);
            assert_eq!(check_email(&address), Err(why), "{address}");
        }
        // A digit-only label is a name below the top level.
        assert_eq!(
            check_email(&format!("{}@{}", "mailer", "365.contoso.com")),
            Ok(())
        );
        for local in [".ann", "ann.", "a..nn"] {
            let address = format!("{}@{}", local, "example.org");
            assert_eq!(
                check_email(&address),
                Err(EmailError::LocalDots),
                "{address}"
            );
        }
        assert_eq!(
            check_email(&format!("{}@{}", "a.n.n", "example.org")),
            Ok(())
        );
        // At most 64 bytes before the @ (RFC 5321), beyond ASCII too.
        let name = "a".repeat(64);
        assert_eq!(check_email(&format!("{name}@{}", "example.org")), Ok(()));
        assert_eq!(
            check_email(&format!("{name}b@{}", "example.org")),
            Err(EmailError::LocalTooLong(65))
        );
        assert_eq!(
            check_email(&format!("{}@{}", "\u{e9}".repeat(33), "example.org")),
            Err(EmailError::LocalTooLong(66))
        );
        // An internationalised address (RFC 6531): beyond ASCII in the
        // local part, the domain, or both; the domain's labels keep their rules.
        for ok in [
            "mailer@m\u{fc}nchen.de",
            "j\u{f6}rg@m\u{fc}nchen.de",
            "a@\u{4f8b}\u{5b50}.\u{4e2d}\u{56fd}",
        ] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
        for bad in ["a@m\u{fc}nchen..de", "a@-m\u{fc}nchen.de"] {
            assert_eq!(
                check_email(bad),
                Err(EmailError::BadDomain(HostError::BadLabel)),
                "{bad}"
            );
        }
        assert_eq!(check_email("a@m\u{fc}nchen"), Err(EmailError::NoDot));
        assert_eq!(
            check_email(&format!("{}@{}", "j\u{f6}rg", "example.org")),
            Ok(())
        );
        assert_eq!(
            check_email(&format!("{}@{}", "mail er", "contoso.com")),
            Err(EmailError::Whitespace)
        );
        assert_eq!(
            check_email(&format!("{}@{}\r\nBcc: x", "a", "contoso.com")),
            Err(EmailError::Whitespace)
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn hosts() {
        assert_eq!(check_host("smtp.office365.com"), Ok(()));
        assert_eq!(check_host("127.0.0.1"), Ok(()));
        assert_eq!(check_host("[::1]"), Ok(()));
        assert_eq!(check_host(""), Err(HostError::Empty));
        assert_eq!(
            check_host("email-smtp.{region}.amazonaws.com"),
            Err(HostError::Placeholder)
        );
        assert_eq!(
            check_host("smtp://smtp.office365.com"),
            Err(HostError::UrlPasted)
        );
        assert_eq!(
            check_host("smtp.office365.com:587"),
            Err(HostError::PortPasted)
        );
        assert_eq!(check_host("smtp_office.com"), Err(HostError::BadChar('_')));
        assert_eq!(check_host("-smtp.com"), Err(HostError::BadLabel));
        assert_eq!(check_host("smtp..com"), Err(HostError::BadLabel));
        assert!(is_loopback("localhost") && is_loopback("127.0.0.2") && is_loopback("::1"));
        assert!(!is_loopback("smtp.office365.com") && !is_loopback("10.0.0.1"));
        assert!(is_loopback_address("127.0.0.1") && is_loopback_address("[::1]"));
        assert!(!is_loopback_address("localhost") && !is_loopback_address("10.0.0.1"));
    }
}
