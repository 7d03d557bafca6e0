//! YUV4MPEG2 (`.y4m`) files: raw 4:2:0 pictures behind a one-line text header, the format
//! ffmpeg, x264 and the video test suites exchange. [`Y4mSource`] reads one as a
//! [`VideoSource`]; [`Y4mSink`] writes frames to one as a [`VideoSink`].
//!
//! A file is `YUV4MPEG2 W<width> H<height> F<num>:<den> [I.. A.. C.. X..]\n`, then for every
//! picture `FRAME[ params]\n` followed by the Y, U and V planes, exactly I420's layout.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, SourceError};
use crate::frame::{self, i420_len, Read, VideoFrame};
use crate::video::{VideoSink, VideoSource};

/// The magic word that opens every Y4M file.
const MAGIC: &[u8] = b"YUV4MPEG2";
/// The longest stream or frame header accepted, so that garbage is not read to the end.
const MAX_HEADER: u64 = 1024;
/// Frame rate of a file whose header has no `F` parameter (ffmpeg's choice too).
const DEFAULT_RATE: (u32, u32) = (25, 1);

fn io_error(path: &Path, source: io::Error) -> Error {
    SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

fn format_error(path: &Path, reason: String) -> Error {
    SourceError::Format {
        path: path.to_path_buf(),
        reason,
    }
    .into()
}

/// How a header line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A whole line, now in the buffer without its `\n`.
    Whole,
    /// The file ended before the line began.
    Eof,
    /// The file ended inside the line.
    Cut,
    /// No `\n` within [`MAX_HEADER`] bytes.
    TooLong,
}

/// Reads one `\n`-terminated header line into `line` (its capacity is kept between calls).
fn read_line(reader: &mut BufReader<File>, line: &mut Vec<u8>, path: &Path) -> Result<Line, Error> {
    line.clear();
    reader
        .by_ref()
        .take(MAX_HEADER)
        .read_until(b'\n', line)
        .map_err(|e| io_error(path, e))?;
    Ok(match line.last() {
        None => Line::Eof,
        Some(b'\n') => {
            line.pop();
            Line::Whole
        }
        Some(_) if line.len() >= MAX_HEADER as usize => Line::TooLong,
        Some(_) => Line::Cut,
    })
}

/// The error for a header line that did not end well.
fn line_error(path: &Path, end: Line, what: impl std::fmt::Display) -> Error {
    let reason = match end {
        Line::TooLong => format!("{what} has no end within {MAX_HEADER} bytes"),
        _ => format!("{what} is cut short by the end of the file"),
    };
    format_error(path, reason)
}

/// The start of `bytes`, printable, for error messages.
fn shown(bytes: &[u8]) -> String {
    let head = bytes.get(..24).unwrap_or(bytes);
    format!("{:?}", String::from_utf8_lossy(head))
}

/// The stream parameters of a Y4M header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    width: u32,
    height: u32,
    rate: (u32, u32),
}

/// Parses the header line (without its `\n`).
fn parse_header(line: &[u8]) -> Result<Header, String> {
    let rest = match line.strip_prefix(MAGIC) {
        Some(rest) if rest.is_empty() || rest.starts_with(b" ") => rest,
        _ => {
            return Err(format!(
                "not a Y4M file: it starts with {} instead of YUV4MPEG2",
                shown(line)
            ))
        }
    };
    let text = std::str::from_utf8(rest).map_err(|_| "the header is not text".to_string())?;
    let (mut width, mut height, mut rate) = (None, None, DEFAULT_RATE);
    for token in text.split(' ').filter(|t| !t.is_empty()) {
        let (tag, value) = token.split_at(token.chars().next().map_or(0, char::len_utf8));
        match tag {
            "W" => width = Some(number(value, "width")?),
            "H" => height = Some(number(value, "height")?),
            "F" => {
                let (num, den) = value
                    .split_once(':')
                    .ok_or_else(|| format!("frame rate F{value} is not <num>:<den>"))?;
                rate = (number(num, "frame rate")?, number(den, "frame rate")?);
                if rate.0 == 0 || rate.1 == 0 {
                    return Err(format!("frame rate F{value} is not positive"));
                }
            }
            "C" if !matches!(value, "420" | "420jpeg" | "420paff" | "420mpeg2") => {
                return Err(format!(
                    "colourspace C{value} is not supported: duet reads 8-bit 4:2:0 \
                     (C420, C420jpeg, C420paff, C420mpeg2)"
                ));
            }
            // 4:2:0 colourspaces, interlacing, aspect ratio and extensions do not change the
            // picture layout.
            _ => {}
        }
    }
    let width = width.ok_or("the header has no width (W)")?;
    let height = height.ok_or("the header has no height (H)")?;
    match frame::check_size(width, height) {
        Ok(()) => Ok(Header {
            width,
            height,
            rate,
        }),
        Err(Error::Config(reason)) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

fn number(value: &str, what: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("{what} {value:?} is not a number"))
}

/// A Y4M file read frame by frame as a [`VideoSource`].
///
/// A file has no capture clock: each frame's `capture` is the `now` passed to
/// [`VideoSource::read`], and the caller paces the reads (see [`Y4mSource::fps`]).
#[derive(Debug)]
pub struct Y4mSource {
    path: PathBuf,
    reader: BufReader<File>,
    header: Header,
    /// Reused buffer for frame header lines.
    line: Vec<u8>,
    seq: u64,
    ended: bool,
}

impl Y4mSource {
    /// Opens `path` and parses its header. Only 4:2:0 colourspaces are accepted, at an even
    /// size up to 4096x2304.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::with_capacity(MAX_HEADER as usize);
        let end = read_line(&mut reader, &mut line, &path)?;
        if end == Line::Eof {
            return Err(format_error(&path, "the file is empty".into()));
        }
        // Garbage is reported as not Y4M, whether or not it holds a line break.
        if end != Line::Whole && line.starts_with(MAGIC) {
            return Err(line_error(&path, end, "the header"));
        }
        let header = parse_header(&line).map_err(|reason| format_error(&path, reason))?;
        Ok(Self {
            path,
            reader,
            header,
            line,
            seq: 0,
            ended: false,
        })
    }

    /// Frames per second declared by the header (25 when it declares none).
    pub fn fps(&self) -> f64 {
        f64::from(self.header.rate.0) / f64::from(self.header.rate.1)
    }

    /// Frames read so far.
    pub fn frames_read(&self) -> u64 {
        self.seq
    }

    /// Fills `frame.data` from the file; an end of file part-way is an error naming the frame.
    fn read_planes(&mut self, frame: &mut VideoFrame) -> Result<(), Error> {
        let need = frame.data.len();
        let mut got = 0;
        while let Some(rest) = frame.data.get_mut(got..).filter(|r| !r.is_empty()) {
            match self.reader.read(rest) {
                Ok(0) => {
                    return Err(format_error(
                        &self.path,
                        format!(
                        "frame {} is truncated: {got} of {need} bytes before the end of the file",
                        self.seq
                    ),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&self.path, e)),
            }
        }
        Ok(())
    }
}

impl VideoSource for Y4mSource {
    fn size(&self) -> (u32, u32) {
        (self.header.width, self.header.height)
    }

    /// Reads the next frame; [`Read::End`] once the file is exhausted.
    fn read(&mut self, now: Instant, frame: &mut VideoFrame) -> Result<Read, Error> {
        if self.ended {
            return Ok(Read::End);
        }
        match read_line(&mut self.reader, &mut self.line, &self.path)? {
            Line::Whole => {}
            Line::Eof => {
                self.ended = true;
                return Ok(Read::End);
            }
            end => {
                let what = format_args!("the header of frame {}", self.seq);
                return Err(line_error(&self.path, end, what));
            }
        }
        let params = self.line.strip_prefix(b"FRAME");
        if !params.is_some_and(|p| p.is_empty() || p.starts_with(b" ")) {
            return Err(format_error(
                &self.path,
                format!(
                    "expected FRAME before frame {}, found {}",
                    self.seq,
                    shown(&self.line)
                ),
            ));
        }
        frame.resize(self.header.width, self.header.height)?;
        self.read_planes(frame)?;
        frame.seq = self.seq;
        frame.capture = now;
        self.seq += 1;
        Ok(Read::Frame)
    }
}

/// A [`VideoSink`] that writes every frame to a Y4M file, tagged `C420jpeg` (chroma centred
/// between luma samples, as duet's conversions produce it).
///
/// The header is written with the first frame, whose size every later frame must share.
/// Call [`VideoSink::finish`] at the end to flush; a file that received no frame stays empty.
#[derive(Debug)]
pub struct Y4mSink {
    path: PathBuf,
    writer: BufWriter<File>,
    fps: u32,
    /// The size of the first frame, once written.
    size: Option<(u32, u32)>,
    frames: u64,
}

impl Y4mSink {
    /// Creates (or truncates) `path` for frames shown at `fps` frames per second.
    pub fn create(path: impl AsRef<Path>, fps: u32) -> Result<Self, Error> {
        if fps == 0 {
            return Err(Error::Config("Y4M frame rate of 0 fps".into()));
        }
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| io_error(&path, e))?;
        Ok(Self {
            path,
            writer: BufWriter::with_capacity(1 << 16, file),
            fps,
            size: None,
            frames: 0,
        })
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }
}

impl VideoSink for Y4mSink {
    fn write(&mut self, _now: Instant, frame: &VideoFrame) -> Result<(), Error> {
        let size = (frame.width, frame.height);
        match self.size {
            None => {
                frame::check_size(frame.width, frame.height)?;
                writeln!(
                    self.writer,
                    "YUV4MPEG2 W{} H{} F{}:1 Ip A1:1 C420jpeg",
                    frame.width, frame.height, self.fps
                )
                .map_err(|e| io_error(&self.path, e))?;
                self.size = Some(size);
            }
            Some(first) if first != size => {
                return Err(format_error(
                    &self.path,
                    format!(
                        "frame {} is {}x{} but the file was started at {}x{}: \
                         a Y4M file holds one picture size",
                        self.frames, size.0, size.1, first.0, first.1
                    ),
                ))
            }
            Some(_) => {}
        }
        let need = i420_len(frame.width, frame.height);
        if frame.data.len() != need {
            return Err(format_error(
                &self.path,
                format!(
                    "frame {} has {} bytes of picture data, {}x{} I420 needs {need}",
                    self.frames,
                    frame.data.len(),
                    size.0,
                    size.1
                ),
            ));
        }
        self.writer
            .write_all(b"FRAME\n")
            .and_then(|()| self.writer.write_all(&frame.data))
            .map_err(|e| io_error(&self.path, e))?;
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.writer.flush().map_err(|e| io_error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parameters_are_parsed() {
        let h = parse_header(b"YUV4MPEG2 W640 H480 F30000:1001 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2")
            .unwrap();
        assert_eq!((h.width, h.height, h.rate), (640, 480, (30000, 1001)));
        let h = parse_header(b"YUV4MPEG2  H2  W4 ").unwrap();
        assert_eq!((h.width, h.height, h.rate), (4, 2, DEFAULT_RATE));
    }

    #[test]
    fn bad_headers_name_the_problem() {
        let cases: [(&[u8], &str); 9] = [
            (
                b"YUV4MPEG2 W640 H480 F30:1 C444",
                "colourspace C444 is not supported",
            ),
            (b"YUV4MPEG2 W640 H480 F30:1 Cmono", "colourspace Cmono"),
            (b"YUV4MPEG2 W640 H480 F30:1 C420p10", "colourspace C420p10"),
            (b"YUV4MPEG2 W641 H480 F30:1", "641x480"),
            (b"YUV4MPEG2 W8192 H480", "at most 4096x2304"),
            (
                b"YUV4MPEG2 W99999999999 H480",
                "width \"99999999999\" is not a number",
            ),
            (b"YUV4MPEG2 W640 H480 F30:0", "not positive"),
            (b"YUV4MPEG2 W640", "no height"),
            (b"YUV4MPEG2W640 H480", "not a Y4M file"),
        ];
        for (line, want) in cases {
            let e = parse_header(line).unwrap_err();
            assert!(e.contains(want), "{}: {e}", shown(line));
        }
    }
}
