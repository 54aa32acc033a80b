//! Hadoop's `WritableUtils` encodings: the zero-compressed variable-length
//! integers and length-prefixed strings that Hadoop's older `Writable`
//! records (block token identifiers among them) are made of.
//!
//! A value in -112..=127 is one byte. Anything else is a length byte — which
//! also says whether the value is negative — followed by the value's
//! magnitude (one's-complemented when negative) in big-endian bytes.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WritableError {
    #[error("record ends {0} bytes early")]
    Truncated(usize),
    #[error("string length {0} is out of range")]
    BadStringLength(i64),
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("integer {0} does not fit in 32 bits")]
    IntOutOfRange(i64),
}

pub fn write_vlong(out: &mut Vec<u8>, value: i64) {
    if (-112..=127).contains(&value) {
        out.push(value as u8);
        return;
    }
    let (magnitude, mut len) = if value < 0 {
        (!value, -120i32)
    } else {
        (value, -112i32)
    };
    let mut tmp = magnitude;
    while tmp != 0 {
        tmp >>= 8;
        len -= 1;
    }
    out.push(len as i8 as u8);
    let bytes = if len < -120 {
        -(len + 120)
    } else {
        -(len + 112)
    };
    for index in (0..bytes).rev() {
        out.push((magnitude >> (index * 8)) as u8);
    }
}

pub fn write_vint(out: &mut Vec<u8>, value: i32) {
    write_vlong(out, i64::from(value));
}

/// `WritableUtils.writeString`: a vint byte length (-1 for null) and UTF-8.
pub fn write_string(out: &mut Vec<u8>, value: &str) {
    write_vint(out, value.len() as i32);
    out.extend_from_slice(value.as_bytes());
}

/// Reads one record's fields in order.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], WritableError> {
        if self.bytes.len() < count {
            return Err(WritableError::Truncated(count - self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    pub fn read_vlong(&mut self) -> Result<i64, WritableError> {
        let first = self.take(1)?[0] as i8;
        if first >= -112 {
            return Ok(i64::from(first));
        }
        let negative = first < -120;
        let bytes = if negative {
            -119 - i32::from(first)
        } else {
            -111 - i32::from(first)
        } as usize
            - 1;
        let mut magnitude = 0i64;
        for &byte in self.take(bytes)? {
            magnitude = (magnitude << 8) | i64::from(byte);
        }
        Ok(if negative { !magnitude } else { magnitude })
    }

    pub fn read_vint(&mut self) -> Result<i32, WritableError> {
        let value = self.read_vlong()?;
        i32::try_from(value).map_err(|_| WritableError::IntOutOfRange(value))
    }

    /// A string; Hadoop's null (length -1) reads as empty.
    pub fn read_string(&mut self) -> Result<String, WritableError> {
        let length = self.read_vlong()?;
        if length == -1 {
            return Ok(String::new());
        }
        let length = usize::try_from(length)
            .ok()
            .filter(|&length| length <= self.bytes.len())
            .ok_or(WritableError::BadStringLength(length))?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WritableError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_vlong(&mut out, value);
        out
    }

    #[test]
    fn matches_hadoop_encodings() {
        // Values checked against Hadoop's WritableUtils.writeVLong.
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(-112), [0x90]);
        assert_eq!(encoded(128), [0x8f, 0x80]);
        assert_eq!(encoded(-113), [0x87, 0x70]);
        assert_eq!(encoded(1 << 20), [0x8d, 0x10, 0x00, 0x00]);
        assert_eq!(encoded(i64::MAX).len(), 9);
        assert_eq!(encoded(i64::MIN).len(), 9);
    }

    proptest! {
        #[test]
        fn every_long_round_trips(value in any::<i64>()) {
            let bytes = encoded(value);
            let mut reader = Reader::new(&bytes);
            prop_assert_eq!(reader.read_vlong().unwrap(), value);
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut reader = Reader::new(&bytes);
            let _ = reader.read_vlong();
            let _ = reader.read_string();
        }
    }

    #[test]
    fn strings_round_trip_and_lengths_are_checked() {
        let mut out = Vec::new();
        write_string(&mut out, "bp-1-127.0.0.1-17");
        write_string(&mut out, "");
        let mut reader = Reader::new(&out);
        assert_eq!(reader.read_string().unwrap(), "bp-1-127.0.0.1-17");
        assert_eq!(reader.read_string().unwrap(), "");
        let mut long = Vec::new();
        write_vint(&mut long, 1000);
        long.extend_from_slice(b"short");
        assert_eq!(
            Reader::new(&long).read_string(),
            Err(WritableError::BadStringLength(1000))
        );
    }
}
