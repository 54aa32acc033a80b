//! `rdfs haadmin`: the roles of an HA nameservice's namenodes and manual
//! transitions, as `hdfs haadmin` offers them.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use rdfs_common::ExceptionKind;
use rdfs_common::config::{Config, NamenodeAddress};
use rdfs_common::grpc::UserInterceptor;
use rdfs_proto as pb;
use rdfs_proto::ha_service_client::HaServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::generic::GenericOptions;

const USAGE: &str = "Usage: rdfs haadmin [generic options]
    [-getServiceState <serviceId>]
    [-getAllServiceState]
    [-checkHealth <serviceId>]
    [-transitionToActive [--forceactive] <serviceId>]
    [-transitionToStandby <serviceId>]
    [-failover [--forceactive] <serviceId> <serviceId>]
    [-help]";

pub fn main(args: Vec<String>) -> u8 {
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("haadmin: {err:#}");
            255
        }
    }
}

fn run(args: Vec<String>) -> Result<u8> {
    let (generic, rest) = GenericOptions::parse_anywhere(args)?;
    let Some(command) = rest.first().cloned() else {
        eprintln!("{USAGE}");
        return Ok(255);
    };
    let config = generic.load()?;
    let operands: Vec<&str> = rest[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let force_active = rest.iter().any(|a| a == "--forceactive");
    let runtime = crate::generic::runtime()?;
    runtime.block_on(async {
        match command.as_str() {
            "-getServiceState" => {
                let nn = one(&config, &operands)?;
                let status = status(&config, &nn).await?;
                println!("{}", state_name(status.state));
                Ok(0)
            }
            "-getAllServiceState" => {
                let namenodes = config.ha_namenodes()?;
                if namenodes.is_empty() {
                    bail!("no HA namenodes are configured (ha.namenodes is empty)");
                }
                for nn in namenodes {
                    match status(&config, &nn).await {
                        Ok(status) => {
                            println!("{:<50} {:<10}", nn.address, state_name(status.state))
                        }
                        Err(err) => println!("{:<50} Failed to connect: {err:#}", nn.address),
                    }
                }
                Ok(0)
            }
            "-checkHealth" => {
                let nn = one(&config, &operands)?;
                let status = status(&config, &nn).await?;
                if status.ready_to_become_active
                    || status.state == pb::HaState::Active as i32
                {
                    Ok(0)
                } else {
                    eprintln!("Health check failed: {}", status.not_ready_reason);
                    Ok(1)
                }
            }
            "-transitionToActive" => {
                let nn = one(&config, &operands)?;
                if !force_active {
                    for other in config.ha_namenodes()?.into_iter().filter(|o| o.id != nn.id) {
                        if let Ok(status) = status(&config, &other).await
                            && status.state == pb::HaState::Active as i32
                        {
                            bail!(
                                "transitionToActive: Node {} is already active; refusing to make {} active too (use -failover {} {}).",
                                other.id,
                                nn.id,
                                other.id,
                                nn.id
                            );
                        }
                    }
                }
                let epoch = to_active(&config, &nn, false).await?;
                eprintln!("{} is now active (journal epoch {epoch})", nn.id);
                Ok(0)
            }
            "-transitionToStandby" => {
                let nn = one(&config, &operands)?;
                client(&config, &nn)?
                    .transition_to_standby(pb::TransitionToStandbyRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}: {}", nn.id, s.message()))?;
                Ok(0)
            }
            "-failover" => {
                let [from, to] = operands.as_slice() else {
                    bail!("-failover needs two namenode ids: FROM TO\n{USAGE}");
                };
                let from = find(&config, from)?;
                let to = find(&config, to)?;
                if from.id == to.id {
                    bail!("-failover: {} and {} are the same namenode", from.id, to.id);
                }
                // Only the active may be stepped down for a take-over:
                // taking over from anyone else would leave the real active
                // serving reads until its lease ran out.
                if let Ok(source) = status(&config, &from).await
                    && source.state != pb::HaState::Active as i32
                {
                    bail!(
                        "-failover: {} is not active (it is {}); nothing to fail over from",
                        from.id,
                        state_name(source.state)
                    );
                }
                let target = status(&config, &to)
                    .await
                    .with_context(|| format!("{} cannot be reached", to.id))?;
                if !target.ready_to_become_active && !force_active {
                    bail!(
                        "{} is not ready to become active: {}",
                        to.id,
                        target.not_ready_reason
                    );
                }
                // Step the old active down gracefully. If it cannot be
                // reached it may still be serving until its lease runs out,
                // so the new one waits for the lease rather than taking over
                // at once (its epoch then fences the old one's writes).
                let stepped_down = match client(&config, &from)?
                    .transition_to_standby(pb::TransitionToStandbyRequest {})
                    .await
                {
                    Ok(_) => true,
                    // Not allowed is no reason to wait for a lease.
                    Err(err)
                        if ExceptionKind::of_status(&err) == Some(ExceptionKind::AccessControl) =>
                    {
                        bail!("{}: {}", from.id, err.message());
                    }
                    Err(err) => {
                        eprintln!(
                            "{} did not step down ({}); waiting for its leadership lease to lapse",
                            from.id,
                            err.message()
                        );
                        false
                    }
                };
                let lease = Duration::from_millis(config.ha.lease_timeout_ms);
                let deadline = std::time::Instant::now() + lease * 3;
                loop {
                    match to_active(&config, &to, stepped_down).await {
                        Ok(_) => break,
                        Err(err) if std::time::Instant::now() < deadline => {
                            tracing::debug!(error = %err, "not active yet; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(err) => return Err(err),
                    }
                }
                println!("Failover to {} successful", to.id);
                Ok(0)
            }
            "-help" | "--help" | "-h" => {
                println!("{USAGE}");
                Ok(0)
            }
            other => {
                eprintln!("{other}: Unknown command\n{USAGE}");
                Ok(255)
            }
        }
    })
}

fn find(config: &Config, id: &str) -> Result<NamenodeAddress> {
    let namenodes = config.ha_namenodes()?;
    namenodes
        .iter()
        .find(|nn| nn.id == id)
        .cloned()
        .with_context(|| {
            format!(
                "{id} is not a namenode of this nameservice (ha.namenodes: {})",
                namenodes
                    .iter()
                    .map(|nn| nn.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn one(config: &Config, operands: &[&str]) -> Result<NamenodeAddress> {
    match operands {
        [id] => find(config, id),
        _ => bail!("expected one namenode id\n{USAGE}"),
    }
}

type Client = HaServiceClient<InterceptedService<Channel, UserInterceptor>>;

/// A client of `nn`'s HA service that names the caller: transitions are
/// the superuser's.
fn client(config: &Config, nn: &NamenodeAddress) -> Result<Client> {
    let channel = rdfs_common::grpc::channel(&nn.address, Duration::from_secs(5))
        .with_context(|| format!("bad address {} for {}", nn.address, nn.id))?;
    let login = crate::generic::login_user(config);
    let user = crate::generic::client_user(config);
    let real = (user != login).then_some(login.as_str());
    let as_user = UserInterceptor::new(&user, real).map_err(|why| anyhow::anyhow!(why))?;
    Ok(HaServiceClient::with_interceptor(channel, as_user))
}

async fn status(config: &Config, nn: &NamenodeAddress) -> Result<pb::GetServiceStatusResponse> {
    let mut client = client(config, nn)?;
    let call = client.get_service_status(pb::GetServiceStatusRequest {});
    let response = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| anyhow::anyhow!("{} ({}) did not answer", nn.id, nn.address))?
        .map_err(|s| anyhow::anyhow!("{} ({}): {}", nn.id, nn.address, s.message()))?;
    Ok(response.into_inner())
}

async fn to_active(config: &Config, nn: &NamenodeAddress, take_over: bool) -> Result<u64> {
    let response = client(config, nn)?
        .transition_to_active(pb::TransitionToActiveRequest { take_over })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(response.into_inner().epoch)
}

fn state_name(state: i32) -> &'static str {
    match pb::HaState::try_from(state) {
        Ok(pb::HaState::Active) => "active",
        Ok(pb::HaState::Standby) => "standby",
        Ok(pb::HaState::Stopping) => "stopping",
        _ => "initializing",
    }
}
