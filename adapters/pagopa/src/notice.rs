//! Notice numbers and IUVs (aux digit 3): `3` + segregation code (2) + IUV base (13) + check
//! digits (2), where the check digits are the first 16 digits mod 93.

/// The two check digits of the 16 digits `aux + segregation + base`.
pub fn check_digits(first16: &str) -> Option<String> {
    if first16.len() != 16 || !first16.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = first16.parse().ok()?;
    Some(format!("{:02}", n % 93))
}

/// Why a notice number does not belong to the ente.
#[derive(Debug, PartialEq, Eq)]
pub enum NoticeError {
    AuxDigit,
    Segregation,
    CheckDigits,
}

/// Checks an 18-digit notice number against the ente's segregation code; its IUV (17 digits).
pub fn iuv_of(notice: &str, segregation: &str) -> Result<String, NoticeError> {
    if !notice.starts_with('3') {
        return Err(NoticeError::AuxDigit);
    }
    if &notice[1..3] != segregation {
        return Err(NoticeError::Segregation);
    }
    if check_digits(&notice[..16]).as_deref() != Some(&notice[16..]) {
        return Err(NoticeError::CheckDigits);
    }
    Ok(notice[1..].to_owned())
}

/// A valid notice number for the ente from a 13-digit IUV base.
pub fn notice_number(segregation: &str, base13: &str) -> Option<String> {
    let first = format!("3{segregation}{base13}");
    Some(format!("{first}{}", check_digits(&first)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod_93() {
        let n = notice_number("12", "0000000000123").unwrap();
        assert_eq!(n.len(), 18);
        assert_eq!(n, format!("3120000000000123{:02}", 3_120_000_000_000_123u64 % 93));
        assert_eq!(iuv_of(&n, "12"), Ok(n[1..].to_owned()));
        assert_eq!(iuv_of(&n, "13"), Err(NoticeError::Segregation));
        let mut bad = n.clone();
        bad.replace_range(16.., if &n[16..] == "00" { "01" } else { "00" });
        assert_eq!(iuv_of(&bad, "12"), Err(NoticeError::CheckDigits));
        assert_eq!(iuv_of(&format!("0{}", &n[1..]), "12"), Err(NoticeError::AuxDigit));
    }
}
