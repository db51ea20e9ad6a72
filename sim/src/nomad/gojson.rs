//! Body syntax checking with the texts of Go's `json.Decoder` (`decodeBody`), so malformed
//! bodies get Nomad's 400 body byte for byte. Only the first JSON value is read, as `Decode` does.

use serde_json::Value;

/// Reads the first JSON value of `body` or returns Go's error text.
pub fn decode_first(body: &[u8]) -> Result<Value, String> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    if s.i >= body.len() {
        return Err("EOF".into());
    }
    s.value()?;
    let end = s.i;
    serde_json::from_slice(&body[..end]).map_err(|e| format!("json: {e}"))
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        b'\n' => "'\\n'".into(),
        b'\t' => "'\\t'".into(),
        b'\r' => "'\\r'".into(),
        _ => format!("'\\x{c:02x}'"),
    }
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Result<u8, String> {
        let c = *self.b.get(self.i).ok_or_else(|| "unexpected EOF".to_string())?;
        self.i += 1;
        Ok(c)
    }

    fn err(c: u8, ctx: &str) -> String {
        format!("invalid character {} {ctx}", quote_char(c))
    }

    fn value(&mut self) -> Result<(), String> {
        self.ws();
        let c = self.next()?;
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(c),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => Err(Self::err(c, "looking for beginning of value")),
        }
    }

    fn object(&mut self) -> Result<(), String> {
        self.ws();
        let mut c = self.next()?;
        if c == b'}' {
            return Ok(());
        }
        loop {
            if c != b'"' {
                return Err(Self::err(c, "looking for beginning of object key string"));
            }
            self.string()?;
            self.ws();
            let colon = self.next()?;
            if colon != b':' {
                return Err(Self::err(colon, "after object key"));
            }
            self.value()?;
            self.ws();
            match self.next()? {
                b',' => {
                    self.ws();
                    c = self.next()?;
                }
                b'}' => return Ok(()),
                other => return Err(Self::err(other, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.ws();
            match self.next()? {
                b',' => {}
                b']' => return Ok(()),
                other => return Err(Self::err(other, "after array element")),
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        loop {
            let c = self.next()?;
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let e = self.next()?;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let h = self.next()?;
                                if !h.is_ascii_hexdigit() {
                                    return Err(Self::err(h, "in \\u hexadecimal character escape"));
                                }
                            }
                        }
                        other => return Err(Self::err(other, "in string escape code")),
                    }
                }
                c if c < 0x20 => return Err(Self::err(c, "in string literal")),
                _ => {}
            }
        }
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    fn number(&mut self, first: u8) -> Result<(), String> {
        let mut c = first;
        if c == b'-' {
            c = self.next()?;
            if !c.is_ascii_digit() {
                return Err(Self::err(c, "in numeric literal"));
            }
        }
        if c != b'0' {
            self.digits();
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return Err(Self::err(d, "after decimal point in numeric literal"));
            }
            self.digits();
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            let mut d = self.next()?;
            if d == b'+' || d == b'-' {
                d = self.next()?;
            }
            if !d.is_ascii_digit() {
                return Err(Self::err(d, "in exponent of numeric literal"));
            }
            self.digits();
        }
        Ok(())
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        for expected in word.bytes().skip(1) {
            let c = self.next()?;
            if c != expected {
                return Err(Self::err(c, &format!("in literal {word} (expecting {})", quote_char(expected))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::decode_first;

    #[test]
    fn decode_first_should_use_go_decoder_texts() {
        assert_eq!(
            decode_first(b"{not json").unwrap_err(),
            "invalid character 'n' looking for beginning of object key string"
        );
        assert_eq!(decode_first(b"{\"a\":1").unwrap_err(), "unexpected EOF");
        assert_eq!(decode_first(b"{\"a\" 1}").unwrap_err(), "invalid character '1' after object key");
        assert_eq!(decode_first(b"{\"a\":1 \"b\"}").unwrap_err(), "invalid character '\"' after object key:value pair");
        assert_eq!(decode_first(b"[1 2]").unwrap_err(), "invalid character '2' after array element");
        assert_eq!(decode_first(b"{\"a\":tru}").unwrap_err(), "invalid character '}' in literal true (expecting 'e')");
        assert_eq!(decode_first(b"{\"a\":-x}").unwrap_err(), "invalid character 'x' in numeric literal");
        assert_eq!(decode_first(b"  ").unwrap_err(), "EOF");
        assert_eq!(decode_first(b"x").unwrap_err(), "invalid character 'x' looking for beginning of value");
        assert!(decode_first(b"{\"a\":1} trailing").is_ok(), "Decode reads only the first value");
    }
}
