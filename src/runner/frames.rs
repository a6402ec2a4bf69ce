//! Reading the launcher's frames off the container's stdout.
//!
//! `runner_image/launch.py` is the only writer of that stream (the program holds only pipes into
//! the launcher), and it writes nothing but frames: `<tag: 1 byte> <length: u32 big-endian>
//! <payload>`, tags in [`crate::sandbox::tags`]. Anything else — an unknown tag, an oversized
//! frame, a stream that ends inside a frame — means the launcher is not ours or did not finish,
//! and is reported as such; it never becomes output.

use std::io::{ErrorKind, Read};

use crate::sandbox::tags;

/// No frame the launcher writes is bigger: output comes in 64 KiB pieces, messages are short.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Ready(Vec<u8>),
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// `path\0bytes`: (a piece of) an artifact.
    Artifact(Vec<u8>),
    /// The artifacts' manifest (JSON).
    Manifest(Vec<u8>),
    End(Vec<u8>),
    Failed(Vec<u8>),
}

/// Why the frame stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// End of file between frames.
    Closed,
    /// End of file inside a frame: the launcher (or its container) died while writing.
    Truncated,
    /// Not a frame of ours: an unknown tag or an impossible length.
    Corrupt(String),
    /// The pipe could not be read.
    Broken(String),
}

/// Decodes frames from a byte stream, one at a time.
pub struct FrameReader<R> {
    input: R,
}

impl<R: Read> FrameReader<R> {
    pub fn new(input: R) -> FrameReader<R> {
        FrameReader { input }
    }

    /// The next frame, or why there is none.
    pub fn next_frame(&mut self) -> Result<Frame, StreamEnd> {
        let mut head = [0u8; 5];
        match fill(&mut self.input, &mut head)? {
            0 => return Err(StreamEnd::Closed),
            5 => {}
            _ => return Err(StreamEnd::Truncated),
        }
        let tag = head[0];
        let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !matches!(
            tag,
            tags::READY
                | tags::STARTED
                | tags::STDOUT
                | tags::STDERR
                | tags::ARTIFACT
                | tags::MANIFEST
                | tags::END
                | tags::FAILED
        ) {
            return Err(StreamEnd::Corrupt(format!("unknown frame tag {tag:#04x}")));
        }
        if length > MAX_PAYLOAD {
            return Err(StreamEnd::Corrupt(format!(
                "a frame of {length} bytes (at most {MAX_PAYLOAD})"
            )));
        }
        let mut payload = vec![0u8; length];
        if fill(&mut self.input, &mut payload)? != length {
            return Err(StreamEnd::Truncated);
        }
        Ok(match tag {
            tags::READY => Frame::Ready(payload),
            tags::STARTED => Frame::Started,
            tags::STDOUT => Frame::Stdout(payload),
            tags::STDERR => Frame::Stderr(payload),
            tags::ARTIFACT => Frame::Artifact(payload),
            tags::MANIFEST => Frame::Manifest(payload),
            tags::END => Frame::End(payload),
            _ => Frame::Failed(payload),
        })
    }
}

/// Read until `buffer` is full or the stream ends; how many bytes came.
fn fill(input: &mut impl Read, buffer: &mut [u8]) -> Result<usize, StreamEnd> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(StreamEnd::Broken(error.to_string())),
        }
    }
    Ok(filled)
}

/// A frame as the launcher writes it (for tests of the reader and the supervisor).
#[cfg(test)]
pub fn encode(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per read, to split every frame.
    struct Trickle(std::io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let len = buf.len().min(1);
            self.0.read(&mut buf[..len])
        }
    }

    fn all(bytes: Vec<u8>) -> (Vec<Frame>, StreamEnd) {
        let mut reader = FrameReader::new(Trickle(std::io::Cursor::new(bytes)));
        let mut frames = Vec::new();
        loop {
            match reader.next_frame() {
                Ok(frame) => frames.push(frame),
                Err(end) => return (frames, end),
            }
        }
    }

    #[test]
    fn frames_are_read_whole_however_the_bytes_arrive() {
        let mut stream = encode(tags::READY, b"SAFE-EXEC/3");
        stream.extend(encode(tags::STARTED, b""));
        stream.extend(encode(tags::STDOUT, b"out\n"));
        stream.extend(encode(tags::STDERR, b"\0safe-exec:end forged\n"));
        stream.extend(encode(tags::END, b"exit 0 ..."));
        let (frames, end) = all(stream);
        assert_eq!(
            frames,
            [
                Frame::Ready(b"SAFE-EXEC/3".to_vec()),
                Frame::Started,
                Frame::Stdout(b"out\n".to_vec()),
                Frame::Stderr(b"\0safe-exec:end forged\n".to_vec()),
                Frame::End(b"exit 0 ...".to_vec()),
            ]
        );
        assert_eq!(end, StreamEnd::Closed);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_truncated() {
        let whole = encode(tags::STDOUT, b"hello");
        for cut in 1..whole.len() {
            let (frames, end) = all(whole[..cut].to_vec());
            assert!(frames.is_empty());
            assert_eq!(end, StreamEnd::Truncated, "cut at {cut}");
        }
    }

    #[test]
    fn text_that_is_not_a_frame_is_corrupt_not_output() {
        let (frames, end) = all(b"safe-exec launcher: usage".to_vec());
        assert!(frames.is_empty());
        assert!(matches!(end, StreamEnd::Corrupt(_)));
        let mut huge = vec![tags::STDOUT];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(all(huge).1, StreamEnd::Corrupt(_)));
    }
}
