//! The API's JSON request bodies: the first byte picks the request kind,
//! the rest is the body, parsed by `api::extract::parse_json` (what the
//! `JsonBody` extractor runs), turned into the `replica::Command` the
//! handler makes of it, and decided and written as the writer does
//! (`replica::decide`, then `check_local` and `prepare_write` per op) by
//! zone-a's replica (which holds the fixture's conflict and messages).
//! Migrate, revert and failover go to the engine: only parsed here.
//!
//! Checked: nothing panics; every refusal, from the parse to the write, is
//! a 4xx (`ApiError`'s status: never a 5xx for bad input); a parsed body
//! serialises back to one that parses to the same request; every event the
//! write signs is applied, unrefused, by a peer with the same causal past.
#![no_main]
use drengine::api::error::ApiError;
use drengine::api::extract::parse_json;
use drengine::api::types::*;
use drengine::model::{ServiceId, VmSlot};
use drengine::replica::{
    decide, parse_field_value, Choice, Command, ConflictTarget, Expect, Received, WriteError,
};
use drengine_fuzz::{fixture, keys, zone, NOW_MS};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fuzz_target!(
    init: {
        drengine_fuzz::write_seeds(drengine_fuzz::api_seeds());
    },
    |data: &[u8]| {
        let Some((&kind, body)) = data.split_first() else { return };
        let cmd = match kind % 8 {
            0 => parse::<CreateService>(body).and_then(create),
            1 => parse::<UpdateService>(body).map(|req| {
                Some(Command::Edit {
                    service: fixture().service.clone(),
                    expect: Expect::Any,
                    policy: req.policy,
                    metadata: req.metadata,
                    slot: req.slot,
                })
            }),
            2 => parse::<FailoverRequest>(body).map(|_| None),
            3 => parse::<MigrateRequest>(body).map(|_| None),
            4 => parse::<RevertRequest>(body).map(|_| None),
            5 => parse::<DeactivateRequest>(body).map(|req| {
                Some(Command::Deactivate {
                    service: fixture().service.clone(),
                    zone: req.zone.unwrap_or_else(|| zone("zone-a")),
                })
            }),
            6 => parse_resolve(body).and_then(resolve),
            _ => parse::<SendMessage>(body).and_then(send),
        };
        match cmd {
            Err(e) => assert_4xx(&e),
            Ok(None) => {}
            Ok(Some(cmd)) => execute(&cmd),
        }
    }
);

fn assert_4xx(e: &ApiError) {
    assert!(
        e.status.is_client_error(),
        "bad input answered {}: {}",
        e.status,
        e.message
    );
}

/// Parses as the extractor does, and checks the body round trips.
fn parse<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    body: &[u8],
) -> Result<T, ApiError> {
    let req: T = parse_json(body)?;
    let again: T = parse_json(&serde_json::to_vec(&req).expect("serialise"))
        .unwrap_or_else(|e| panic!("a parsed body does not parse again: {}", e.message));
    assert_eq!(again, req);
    Ok(req)
}

/// A resolve request; its free-form `value` is left out of the round trip
/// (a JSON float need not print back to the same bits).
fn parse_resolve(body: &[u8]) -> Result<ResolveRequest, ApiError> {
    let req: ResolveRequest = parse_json(body)?;
    let mut plain = req.clone();
    plain.value = None;
    let again: ResolveRequest = parse_json(&serde_json::to_vec(&plain).expect("serialise"))
        .unwrap_or_else(|e| panic!("a parsed body does not parse again: {}", e.message));
    assert_eq!(again, plain);
    Ok(req)
}

/// `services::create`: the id given (a derived one otherwise), the slot of
/// this zone, the request's serialisation as its fingerprint.
fn create(req: CreateService) -> Result<Option<Command>, ApiError> {
    let id = req
        .id
        .clone()
        .unwrap_or_else(|| ServiceId::new("zone-a-0123456789abcdef0123").expect("id"));
    let mut print = req.clone();
    print.id = Some(id.clone());
    Ok(Some(Command::Protect {
        service: id,
        policy: req.policy,
        metadata: req.metadata,
        slot: VmSlot {
            cmp_vm_id: req.cmp_vm_id,
            disks: req.disks,
            active: true,
        },
        fingerprint: serde_json::to_vec(&print).expect("serialise"),
    }))
}

/// `conflicts::resolve`.
fn resolve(req: ResolveRequest) -> Result<Option<Command>, ApiError> {
    let choice = match (req.choose, req.value, req.keep_zone) {
        (Some(dot), None, None) => Choice::Side(dot),
        (None, None, Some(zone)) => Choice::KeepZone(zone),
        (None, Some(v), None) => match &req.field {
            ConflictTarget::Field(field) => Choice::Value(parse_field_value(field, v)?),
            ConflictTarget::ActiveVms => {
                return Err(ApiError::invalid("keep_zone", "give keep_zone"))
            }
        },
        _ => return Err(ApiError::invalid("choose", "give exactly one")),
    };
    Ok(Some(Command::Resolve {
        service: fixture().service.clone(),
        target: req.field,
        choice,
        seen: req.seen,
    }))
}

/// `messages::send`: the handler's own `send_op`.
fn send(req: SendMessage) -> Result<Option<Command>, ApiError> {
    let op = drengine::api::messages::send_op(req, || vec![zone("zone-b"), zone("zone-c")])?;
    Ok(Some(Command::Ops(vec![op])))
}

/// The writer's `execute` and `write_ops`, then a peer receives the events.
fn execute(cmd: &Command) {
    let f = fixture();
    let mut r = f.replica_from_a("zone-a", true);
    let decision = match decide(&r, cmd, &|_: &ServiceId| None) {
        Ok(d) => d,
        Err(e) => return assert_4xx(&ApiError::from(e)),
    };
    let run = |r: &mut drengine::replica::Replica| -> Result<Vec<_>, WriteError> {
        if decision.ops.len() > 1 {
            for op in &decision.ops {
                r.check_local(op)?;
            }
        }
        let mut events = Vec::new();
        for op in decision.ops.clone() {
            let ev = r.prepare_write(op, "fuzz", NOW_MS + 3_600_000)?;
            events.push(ev.sign(&keys()[&zone("zone-a")]));
        }
        Ok(events)
    };
    let events = match run(&mut r) {
        Ok(events) => events,
        Err(e) => return assert_4xx(&ApiError::from(e)),
    };
    let mut peer = f.replica_from_a("zone-b", false);
    for ev in events {
        match peer.receive(ev, NOW_MS + 3_600_000) {
            Received::Applied(applied) => {
                for a in applied {
                    assert!(
                        a.rejected.is_none(),
                        "a peer rejects a local write: {:?}",
                        a.rejected
                    );
                }
            }
            other => panic!("a peer does not apply a local write: {other:?}"),
        }
    }
    assert_eq!(
        peer.digest(),
        r.digest(),
        "the peer's state differs from the writer's"
    );
}
