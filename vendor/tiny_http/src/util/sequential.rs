//! Taking turns on one connection: request N's body reader reads only once
//! reader N-1 is done with the stream, and answer N is written only once
//! writer N-1 is done, whatever threads they are on.
//!
//! 0.12 chained each turn to the previous one with a fresh channel: two
//! channels allocated, sent on and torn down per request, a tenth of the
//! server's time under load. Here a connection's readers (and its writers)
//! share one turn counter: a reader or writer holds a ticket, waits until
//! the counter reaches it, and advances it when dropped. Nothing is
//! allocated per request, and a thread is woken only if one waits.

use std::io::Result as IoResult;
use std::io::{BufRead, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The turn counter of a connection's readers or writers, with what the
/// turn holder uses: the stream itself for writers; for readers, the
/// stream while no reader has it.
struct Turns<T> {
    state: Mutex<State<T>>,
    turned: Condvar,
}

struct State<T> {
    /// The ticket whose turn it is.
    serving: u64,
    /// Tickets given up before their turn came.
    skipped: Vec<u64>,
    /// Threads waiting for their turn.
    waiting: usize,
    stream: Option<T>,
}

impl<T> Turns<T> {
    fn new(stream: T) -> Arc<Turns<T>> {
        Arc::new(Turns {
            state: Mutex::new(State {
                serving: 0,
                skipped: Vec::new(),
                waiting: 0,
                stream: Some(stream),
            }),
            turned: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, once it is `ticket`'s turn.
    fn wait_for(&self, ticket: u64) -> MutexGuard<'_, State<T>> {
        let mut state = self.lock();
        while state.serving != ticket {
            state.waiting += 1;
            state = self.turned.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
        state
    }

    /// Ends `ticket`'s turn (or gives it up before it came), giving the
    /// stream back if it was taken.
    fn finish(&self, ticket: u64, stream: Option<T>) {
        let mut state = self.lock();
        if stream.is_some() {
            state.stream = stream;
        }
        if state.serving != ticket {
            state.skipped.push(ticket);
            return;
        }
        state.serving += 1;
        while let Some(i) = state.skipped.iter().position(|&t| t == state.serving) {
            state.skipped.swap_remove(i);
            state.serving += 1;
        }
        if state.waiting > 0 {
            self.turned.notify_all();
        }
    }
}

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    turns: Arc<Turns<R>>,
    next: u64,
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    turns: Arc<Turns<R>>,
    ticket: u64,
    /// The stream, once this reader's turn has come.
    reader: Option<R>,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    turns: Arc<Turns<W>>,
    next: u64,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    turns: Arc<Turns<W>>,
    ticket: u64,
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            turns: Turns::new(reader),
            next: 0,
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            turns: Turns::new(writer),
            next: 0,
        }
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        self.next += 1;
        Some(SequentialReader {
            turns: self.turns.clone(),
            ticket: self.next - 1,
            reader: None,
        })
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;

    fn next(&mut self) -> Option<SequentialWriter<W>> {
        self.next += 1;
        Some(SequentialWriter {
            turns: self.turns.clone(),
            ticket: self.next - 1,
        })
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// Waits until the readers before this one are done with the stream.
    pub fn wait_turn(&mut self) -> IoResult<()> {
        if self.reader.is_none() {
            self.reader = self.turns.wait_for(self.ticket).stream.take();
        }
        match self.reader {
            Some(_) => Ok(()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn reader(&mut self) -> IoResult<&mut R> {
        self.wait_turn()?;
        self.reader
            .as_mut()
            .ok_or_else(|| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.reader()?.read(buf)
    }
}

/// A head is read a buffer at a time, not a byte at a time.
impl<R: BufRead + Send> BufRead for SequentialReader<R> {
    fn fill_buf(&mut self) -> IoResult<&[u8]> {
        self.reader()?.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Some(reader) = &mut self.reader {
            reader.consume(amt);
        }
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match &mut self.turns.wait_for(self.ticket).stream {
            Some(writer) => writer.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match &mut self.turns.wait_for(self.ticket).stream {
            Some(writer) => writer.flush(),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        self.turns.finish(self.ticket, self.reader.take());
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.turns.finish(self.ticket, None);
    }
}
