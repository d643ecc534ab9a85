//! One message on two threads: the package's tensor-parallel stages (`[parallel]` in the manifest,
//! written by `models/train/parallel.py`) give each thread half of every layer, so an idle server
//! answers a single call in about two thirds of the time one thread takes (each half costs more
//! than half: layer norms run on both threads, and two cores share the L3). tract itself runs a graph on one
//! thread (its multi-threaded matmul gains <10 % at chat lengths), onnxruntime spreads one call
//! over both cores: this is how a call here uses both too.
//!
//! The calling inference worker leads and runs half 0; a helper thread, owned by this runner, runs
//! half 1. After each stage both publish a partial sum and read the other's: two exchanges per
//! layer, through spin-waits, because a parked thread takes longer to wake than a stage takes.
//! Each thread sums the residual stream itself (`x + partial_0 + partial_1`, in the same order on
//! both, so both feed the next stage the same bits): tract's Add of two runtime tensors costs
//! ~20 µs at chat lengths, this loop ~2.
//! Batches never come here (batching already keeps both cores busy).
//!
//! A split run gives way: when other work is waiting for a core (`GiveWay::asked`, checked by the
//! leader before each stage), the helper stops before its next stage and the leader runs the rest
//! of both halves alone, so the waiting run gets the helper's core within one stage (~0.3 ms)
//! instead of after the whole message. The halves' stages take the same inputs, so the leader's
//! copy of half 1 gives the same partial sums the helper would have.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tract_onnx::prelude::*;

use super::{optimize, ModelError, ParallelSection};

type Plan = Arc<TypedRunnableModel>;
/// A plan's run state, kept between messages: building one per run (tract's `plan.run`) costs an
/// allocation per node, nine stages a message.
type State = TypedSimpleState;

/// How long the helper keeps spinning for the next message before it sleeps. Measured with one
/// caller sending back to back (`loadgen single-call`): 100 µs gave the lowest p50 (3.6–3.7 ms
/// against 3.8–4.1 at 300 µs, 4.0–5.1 at 1.5 ms and 4.1–4.4 when it parks at once): longer spins
/// take the core the reply and the next request need.
const HELPER_SPIN: Duration = Duration::from_micros(100);
/// A stage takes ~0.3 ms: a partner that has not answered in this long is gone (a bug, not load).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a split run should give one of its cores to other work, and what to do once it has.
pub trait GiveWay {
    /// Other work waits for a core.
    fn asked(&self) -> bool;
    /// The helper has stopped: its core is free for that work.
    fn helper_left(&self);
}

/// Never gives way (golden checks, benchmarks).
pub struct Never;

impl GiveWay for Never {
    fn asked(&self) -> bool {
        false
    }
    fn helper_left(&self) {}
}

/// One message in flight: what each half has published so far.
struct Run {
    embedded: OnceLock<(TValue, TValue)>,
    partials: [Vec<OnceLock<TValue>>; 2],
    failed: AtomicBool,
    /// Set by the leader: the helper starts no further stage.
    stop: AtomicBool,
    /// The stage the helper stopped before (`usize::MAX` while it runs): every earlier stage of
    /// half 1 is published, this one and the later ones the leader runs.
    left_at: AtomicUsize,
}

impl Run {
    fn new(stages: usize) -> Run {
        let cells = || (0..stages).map(|_| OnceLock::new()).collect();
        Run {
            embedded: OnceLock::new(),
            partials: [cells(), cells()],
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            left_at: AtomicUsize::new(usize::MAX),
        }
    }

    fn wait<'a, T>(&'a self, cell: &'a OnceLock<T>) -> Result<&'a T, ModelError> {
        self.wait_or(cell, || false)
            .map(|v| v.expect("waits until set when never told to stop"))
    }

    /// Spin until `cell` is set (`Some`) or `stop` says there is no point waiting (`None`).
    fn wait_or<'a, T>(
        &'a self,
        cell: &'a OnceLock<T>,
        mut stop: impl FnMut() -> bool,
    ) -> Result<Option<&'a T>, ModelError> {
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            if let Some(v) = cell.get() {
                return Ok(Some(v));
            }
            if stop() {
                return Ok(None);
            }
            if self.failed.load(Ordering::Acquire) {
                return Err(stage_error("the other half failed"));
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                if started.elapsed() > EXCHANGE_TIMEOUT {
                    return Err(stage_error("the other half did not answer"));
                }
                // Another worker may share our core: let it run rather than spin against it.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Marks the run failed unless disarmed, so a half that errors or panics never leaves the other
/// waiting.
struct FailOnDrop<'a>(&'a Run, bool);

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.failed.store(true, Ordering::Release);
        }
    }
}

fn stage_error(what: &'static str) -> ModelError {
    ModelError::Parallel(what)
}

fn run_err(e: TractError) -> ModelError {
    ModelError::Run(e.into())
}

/// The leader's run states (each holds its plan).
struct LeaderStates {
    /// model.onnx cut at the embedding: (input_ids, attention_mask) -> (tokens, attention bias).
    embed: State,
    /// Half 0: l0_attn, l0_ffn, l1_attn, l1_ffn, ... (the helper holds half 1's).
    half: Vec<State>,
    /// The leader's own states of half 1, for the stages after the helper gave way.
    other: Vec<State>,
    head: State,
}

pub struct ParallelRunner {
    /// Only one message at a time runs split; a second caller runs the whole graph instead.
    leading: Mutex<LeaderStates>,
    helper: Sender<Arc<Run>>,
}

impl ParallelRunner {
    pub fn load(
        dir: &Path,
        section: &ParallelSection,
        whole: &InferenceModel,
    ) -> Result<ParallelRunner, ModelError> {
        let onnx_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e: TractError| ModelError::Onnx {
                path: path.clone(),
                source: e.into(),
            }
        };
        let mut embed = whole.clone();
        embed
            .select_outputs_by_name(&section.embed_outputs)
            .map_err(onnx_err(&dir.join("model.onnx")))?;
        let embed = optimize(embed).map_err(onnx_err(&dir.join("model.onnx")))?;
        let stage = |name: String| -> Result<Plan, ModelError> {
            let path = dir.join(&section.dir).join(name);
            super::require_file(&path)?;
            let model = tract_onnx::onnx()
                .model_for_path(&path)
                .map_err(onnx_err(&path))?;
            optimize(model).map_err(onnx_err(&path))
        };
        let half = |k: usize| -> Result<Vec<Plan>, ModelError> {
            let mut plans = Vec::with_capacity(2 * section.layers);
            for n in 0..section.layers {
                plans.push(stage(format!("l{n}_attn_{k}.onnx"))?);
                plans.push(stage(format!("l{n}_ffn_{k}.onnx"))?);
            }
            Ok(plans)
        };
        let states = |plans: Vec<Plan>| -> Result<Vec<State>, ModelError> {
            plans
                .iter()
                .map(|p| State::new(p).map_err(run_err))
                .collect()
        };
        let (zero, other) = (half(0)?, half(1)?);
        let leader = LeaderStates {
            embed: State::new(&embed).map_err(run_err)?,
            half: states(zero)?,
            other: states(other.clone())?,
            head: State::new(&stage("head.onnx".into())?).map_err(run_err)?,
        };
        let helper_states = states(other)?;
        let (helper, jobs) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("inference-half".into())
            .spawn(move || helper_loop(helper_states, jobs))
            .map_err(|e| ModelError::Io(dir.to_path_buf(), e))?;
        Ok(ParallelRunner {
            leading: Mutex::new(leader),
            helper,
        })
    }

    /// Run one message split over two threads; `None` when another message already is (the
    /// caller then runs the whole graph).
    pub fn run(
        &self,
        ids: Tensor,
        mask: Tensor,
        give_way: &dyn GiveWay,
    ) -> Option<Result<TVec<TValue>, ModelError>> {
        let mut states = self.leading.try_lock().ok()?;
        let run = Arc::new(Run::new(states.half.len()));
        // Wake the helper first: it comes up while we embed.
        if self.helper.try_send(run.clone()).is_err() {
            return None;
        }
        let mut guard = FailOnDrop(&run, false);
        let result = lead(&mut states, &run, ids, mask, give_way);
        guard.1 = result.is_ok();
        drop(guard);
        Some(result)
    }
}

fn lead(
    states: &mut LeaderStates,
    run: &Run,
    ids: Tensor,
    mask: Tensor,
    give_way: &dyn GiveWay,
) -> Result<TVec<TValue>, ModelError> {
    let mask: TValue = mask.into();
    let mut embedded = states
        .embed
        .run(tvec![ids.into(), mask.clone()])
        .map_err(run_err)?;
    let (bias, tokens) = (embedded.pop(), embedded.pop());
    let (Some(tokens), Some(bias)) = (tokens, bias) else {
        return Err(stage_error("the embedding stage gave fewer than 2 outputs"));
    };
    let _ = run.embedded.set((tokens, bias));
    let state = lead_half(states, run, give_way)?;
    states.head.run(tvec![state, mask]).map_err(run_err)
}

/// Stage `s`'s inputs, the same for both halves: the embedding and the padding bias first, then
/// the residual sum of the stage before (and the bias again for attention stages).
fn stage_inputs(s: usize, sum: Option<TValue>, bias: &TValue, tokens: &TValue) -> TVec<TValue> {
    match sum {
        None => tvec![tokens.clone(), bias.clone()],
        Some(sum) if s % 2 == 0 => tvec![sum, bias.clone()], // attention stages read the mask
        Some(sum) => tvec![sum],
    }
}

/// Run one stage: its partial sum, and the normalised state the next residual sum starts from
/// (the embedding for the first stage).
fn run_stage(
    state: &mut State,
    s: usize,
    inputs: TVec<TValue>,
    tokens: &TValue,
) -> Result<(TValue, TValue), ModelError> {
    let mut out = state.run(inputs).map_err(run_err)?;
    let partial = out
        .pop()
        .ok_or_else(|| stage_error("a stage gave no output"))?;
    let x = if s == 0 {
        tokens.clone()
    } else {
        out.pop()
            .ok_or_else(|| stage_error("a stage gave no normalised state"))?
    };
    Ok((x, partial))
}

/// The leader's half 0 of every layer, and half 1 of every stage the helper did not run; returns
/// the residual stream after the last layer, before its layer norm (the head's input).
fn lead_half(
    states: &mut LeaderStates,
    run: &Run,
    give_way: &dyn GiveWay,
) -> Result<TValue, ModelError> {
    let (tokens, bias) = run.wait(&run.embedded)?;
    let mut x = tokens.clone();
    let mut last_inputs = TVec::new();
    for s in 0..states.half.len() {
        let sum = if s == 0 {
            None
        } else {
            Some(leader_sum(
                x,
                run,
                s - 1,
                &mut states.other,
                last_inputs,
                give_way,
            )?)
        };
        if s > 0 && !run.stop.load(Ordering::Relaxed) && give_way.asked() {
            run.stop.store(true, Ordering::Release);
        }
        let inputs = stage_inputs(s, sum, bias, tokens);
        let (next, partial) = run_stage(&mut states.half[s], s, inputs.clone(), tokens)?;
        let _ = run.partials[0][s].set(partial);
        (x, last_inputs) = (next, inputs);
    }
    let last = states.half.len() - 1;
    leader_sum(x, run, last, &mut states.other, last_inputs, give_way)
}

/// `residual_sum` for the leader: half 1's partial of stage `s` from the helper, or, once the
/// helper has stopped before that stage, from the leader's own copy of half 1 on `inputs`. At the
/// stage the helper stopped before (the first the leader runs itself), `give_way` learns that the
/// helper's core is free.
fn leader_sum(
    x: TValue,
    run: &Run,
    s: usize,
    other: &mut [State],
    inputs: TVec<TValue>,
    give_way: &dyn GiveWay,
) -> Result<TValue, ModelError> {
    let helper_left = || run.left_at.load(Ordering::Acquire) <= s;
    if run.wait_or(&run.partials[1][s], helper_left)?.is_none() {
        if run.left_at.load(Ordering::Acquire) == s {
            give_way.helper_left();
            metrics::counter!(crate::telemetry::SPLIT_YIELDS).increment(1);
        }
        let tokens = &run.wait(&run.embedded)?.0;
        let (_, partial) = run_stage(&mut other[s], s, inputs, tokens)?;
        let _ = run.partials[1][s].set(partial);
    }
    residual_sum(x, run, s)
}

/// The helper's half 1 of every layer, until the leader asks it to stop.
fn help_half(states: &mut [State], run: &Run) -> Result<(), ModelError> {
    let (tokens, bias) = run.wait(&run.embedded)?;
    let mut x = tokens.clone();
    for (s, state) in states.iter_mut().enumerate() {
        if run.stop.load(Ordering::Acquire) {
            run.left_at.store(s, Ordering::Release);
            return Ok(());
        }
        let sum = if s == 0 {
            None
        } else {
            Some(residual_sum(x, run, s - 1)?)
        };
        let (next, partial) = run_stage(state, s, stage_inputs(s, sum, bias, tokens), tokens)?;
        let _ = run.partials[1][s].set(partial);
        x = next;
    }
    Ok(())
}

/// `x + partial_0 + partial_1` of stage `s`, once both halves have published theirs.
fn residual_sum(x: TValue, run: &Run, s: usize) -> Result<TValue, ModelError> {
    let p0 = run.wait(&run.partials[0][s])?;
    let p1 = run.wait(&run.partials[1][s])?;
    let mut sum = x.into_tensor();
    {
        let a = p0.to_plain_array_view::<f32>().map_err(run_err)?;
        let b = p1.to_plain_array_view::<f32>().map_err(run_err)?;
        let mut out = sum.to_plain_array_view_mut::<f32>().map_err(run_err)?;
        if a.shape() != out.shape() || b.shape() != out.shape() {
            return Err(stage_error("partial sums of different shapes"));
        }
        tract_ndarray::Zip::from(&mut out)
            .and(&a)
            .and(&b)
            .for_each(|o, a, b| *o += a + b);
    }
    Ok(sum.into())
}

fn helper_loop(mut states: Vec<State>, jobs: Receiver<Arc<Run>>) {
    // After giving way, other work has the core: sleep at once rather than spin against it.
    let mut gave_way = false;
    loop {
        let spin = if gave_way {
            Duration::ZERO
        } else {
            HELPER_SPIN
        };
        let spin_until = Instant::now() + spin;
        let run = loop {
            match jobs.try_recv() {
                Ok(run) => break run,
                Err(TryRecvError::Disconnected) => return, // the model was unloaded
                Err(TryRecvError::Empty) if Instant::now() < spin_until => std::hint::spin_loop(),
                Err(TryRecvError::Empty) => match jobs.recv() {
                    Ok(run) => break run,
                    Err(_) => return,
                },
            }
        };
        let mut guard = FailOnDrop(&run, false);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            help_half(&mut states, &run).is_ok()
        }))
        .unwrap_or(false);
        guard.1 = ok;
        gave_way = run.left_at.load(Ordering::Relaxed) != usize::MAX;
    }
}
