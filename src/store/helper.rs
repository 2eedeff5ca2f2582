//! The writer's helper thread. The writer thread is the node's one serial
//! stage (apply, then commit), so work that does not need the replica is
//! moved beside it: the helper shares the signing of each batch's local
//! events and hands out what a commit made durable (the commit feed and the
//! callers' replies) while the writer goes on to the next batch.

use crate::replica::sign_canonical;
use ed25519_dalek::{Signature, SigningKey};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Batches smaller than this are signed by the writer alone: waking the
/// helper costs more than it saves.
const SHARED_SIGNING_MIN: usize = 4;

enum Job {
    Sign(Arc<SignBatch>),
    Run(Box<dyn FnOnce() + Send>),
}

/// A handle to the helper thread; the thread ends when the handle is dropped,
/// after finishing the jobs it was given.
pub(super) struct Helper {
    jobs: mpsc::Sender<Job>,
}

impl Helper {
    pub(super) fn start() -> std::io::Result<Helper> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("drengine-writer-helper".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Sign(batch) => batch.work(),
                        Job::Run(f) => f(),
                    }
                }
            })?;
        Ok(Helper { jobs })
    }

    /// Runs `f` on the helper thread after every job given before it (on
    /// this thread if the helper is gone).
    pub(super) fn run(&self, f: Box<dyn FnOnce() + Send>) {
        if let Err(mpsc::SendError(Job::Run(f))) = self.jobs.send(Job::Run(f)) {
            f();
        }
    }

    /// Signs every message (an event's canonical bytes) with `key`, on this
    /// thread and the helper's together. Signatures come back in order.
    pub(super) fn sign_all(&self, key: &SigningKey, messages: Vec<Vec<u8>>) -> Vec<Signature> {
        if messages.len() < SHARED_SIGNING_MIN {
            return messages.iter().map(|m| sign_canonical(key, m)).collect();
        }
        let batch = Arc::new(SignBatch {
            key: key.clone(),
            signatures: messages.iter().map(|_| OnceLock::new()).collect(),
            messages,
            next: AtomicUsize::new(0),
            done: Mutex::new(0),
            all_done: Condvar::new(),
        });
        // If the helper is gone the writer signs everything itself.
        let _ = self.jobs.send(Job::Sign(batch.clone()));
        batch.work();
        batch.wait();
        batch
            .signatures
            .iter()
            .zip(&batch.messages)
            // Every slot is set once `wait` returns; signing again is only
            // a fallback that keeps this total.
            .map(|(s, m)| s.get().copied().unwrap_or_else(|| sign_canonical(key, m)))
            .collect()
    }
}

/// One batch of messages to sign, shared by index between two threads.
struct SignBatch {
    key: SigningKey,
    messages: Vec<Vec<u8>>,
    next: AtomicUsize,
    signatures: Vec<OnceLock<Signature>>,
    done: Mutex<usize>,
    all_done: Condvar,
}

impl SignBatch {
    /// Signs messages until none is left to take.
    fn work(&self) {
        let mut signed = 0;
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(message) = self.messages.get(i) else {
                break;
            };
            let _ = self.signatures[i].set(sign_canonical(&self.key, message));
            signed += 1;
        }
        if signed > 0 {
            let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            *done += signed;
            self.all_done.notify_all();
        }
    }

    /// Waits until every message is signed.
    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while *done < self.messages.len() {
            done = self.all_done.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn shared_signing_signs_every_message_in_order() {
        let helper = Helper::start().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        for n in [0, 1, 3, 4, 5, 64, 513] {
            let messages: Vec<Vec<u8>> = (0..n).map(|i| format!("m{i}").into_bytes()).collect();
            let sigs = helper.sign_all(&key, messages.clone());
            assert_eq!(sigs.len(), n);
            for (m, s) in messages.iter().zip(&sigs) {
                key.verifying_key().verify(m, s).unwrap();
            }
        }
    }

    #[test]
    fn jobs_run_in_order_on_the_helper() {
        let helper = Helper::start().unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..10 {
            let tx = tx.clone();
            helper.run(Box::new(move || tx.send(i).unwrap()));
        }
        let got: Vec<i32> = (0..10).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}
