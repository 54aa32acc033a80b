//! The write path under failure: a datanode killed or paused under a
//! writer, a writer killed after hflush (lease recovery), append and
//! truncate, and no sockets, descriptors or memory left behind by aborted
//! transfers.

use std::io::Write;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{MiniCluster, proc_usage, test_bytes, write_local};

const MIB: usize = 1024 * 1024;

/// A cluster whose every network wait is short, so a paused peer costs
/// seconds, not minutes.
fn quick_cluster(datanodes: usize, block_size: u64, extra: &[(&str, &str)]) -> MiniCluster {
    let mut builder = MiniCluster::builder()
        .datanodes(datanodes)
        .block_size(block_size)
        .replication(3)
        .conf("client.socket_timeout_ms", "3000")
        .conf("datanode.socket_timeout_ms", "3000")
        .conf("namenode.replication_interval_ms", "200")
        // A copy scheduled to a datanode that just died (not yet declared
        // dead) is retried after this instead of HDFS's five minutes.
        .conf("namenode.pending_replication_timeout_ms", "5000")
        .conf("namenode.lease_soft_limit_ms", "1000")
        .conf("namenode.lease_recheck_interval_ms", "200");
    for (key, value) in extra {
        builder = builder.conf(key, value);
    }
    builder.start()
}

fn feed(child: &mut Child, bytes: &[u8]) {
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed the writer");
}

fn finish(mut child: Child, what: &str) -> Duration {
    let started = Instant::now();
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("writer output");
    assert!(
        output.status.success(),
        "{what} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// The datanodes holding the replicas of the block being written, once one
/// has at least `min_len` bytes.
fn pipeline_of_current_block(cluster: &MiniCluster, min_len: u64) -> Vec<usize> {
    let mut holders = Vec::new();
    cluster.wait_until("a replica being written", Duration::from_secs(20), || {
        let rbw = cluster.rbw_replicas();
        let Some((_, path, _)) = rbw.iter().find(|(_, _, len)| *len >= min_len) else {
            return false;
        };
        let name = path.file_name().expect("name").to_owned();
        holders = rbw
            .iter()
            .filter(|(_, p, _)| p.file_name() == Some(name.as_os_str()))
            .map(|(dn, _, _)| *dn)
            .collect();
        holders.len() == 3
    });
    holders
}

/// Writes a 3-block file through `-put` from stdin and hits one datanode of
/// the second block's pipeline with `hit` halfway through; the put must
/// finish with every byte, and every block must get back to 3 replicas.
fn put_through_a_failure(hit: &str, extra: &[(&str, &str)]) {
    let block = 4 * MIB;
    let mut cluster = quick_cluster(4, block as u64, extra);
    let data = test_bytes(3 * block - 12345, 51);

    // The same put with nothing failing, for comparison.
    let baseline = {
        let started = Instant::now();
        let mut writer = cluster.spawn_rdfs("dfs", &["-put", "-", "/baseline"]);
        feed(&mut writer, &data);
        finish(writer, "baseline put");
        started.elapsed()
    };

    let mut writer = cluster.spawn_rdfs("dfs", &["-put", "-", "/f"]);
    let half = block + 2 * MIB;
    feed(&mut writer, &data[..half]);
    let pipeline = pipeline_of_current_block(&cluster, 64 * 1024);
    let victim = pipeline[1];
    let hit_at = Instant::now();
    match hit {
        "kill" => cluster.kill_datanode(victim),
        "stop" => cluster.datanode(victim).signal(libc::SIGSTOP),
        other => panic!("unknown failure {other}"),
    }
    feed(&mut writer, &data[half..]);
    finish(writer, "put with a failing datanode");
    let total = hit_at.elapsed();
    eprintln!(
        "put of {} bytes: {hit} of datanode {victim} in the pipeline; the put finished {} ms after it (the same put without a failure took {} ms)",
        data.len(),
        total.as_millis(),
        baseline.as_millis()
    );
    if hit == "stop" {
        cluster.datanode(victim).signal(libc::SIGCONT);
    }

    let read = cluster.dfs(&["-cat", "/f"]);
    read.ok();
    assert!(
        read.stdout == data,
        "the file read back differs from what was written"
    );
    assert!(
        !cluster
            .block_on(cluster.client().is_under_construction("/f"))
            .expect("status"),
        "the file is closed"
    );
    // Replicas at the old generation stamp are deleted, missing ones made
    // again; every replica left on disk holds the block's bytes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.fsck_all_blocks_have("/f", 3).is_none() {
        if Instant::now() > deadline {
            let fsck = cluster.rdfs("fsck", &["/f", "-files", "-blocks", "-locations"]);
            panic!(
                "blocks did not get back to 3 live replicas:\n{}\n{}",
                fsck.stdout(),
                cluster.namenode_log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let located = cluster
        .block_on(cluster.client().get_block_locations("/f", 0, u64::MAX))
        .expect("locations");
    for block in &located.blocks {
        let start = block.offset as usize;
        let expected = &data[start..start + block.block.num_bytes as usize];
        cluster.wait_until(
            "only current replicas on disk",
            Duration::from_secs(30),
            || {
                // A killed datanode's disk keeps what it had; it no longer counts.
                let files: Vec<_> = cluster
                    .replica_files(block.block.block_id)
                    .into_iter()
                    .filter(|(dn, _, _)| cluster.datanodes[*dn].is_some())
                    .collect();
                files.len() == 3
                    && files.iter().all(|(_, data_file, meta)| {
                        std::fs::read(data_file).is_ok_and(|b| b == expected)
                            && meta
                                .to_string_lossy()
                                .ends_with(&format!("_{}.meta", block.block.generation_stamp))
                    })
            },
        );
    }
}

#[test]
fn put_survives_a_datanode_killed_mid_block() {
    put_through_a_failure("kill", &[]);
}

#[test]
fn put_survives_a_paused_datanode_with_a_replacement() {
    // ALWAYS: the pipeline gets a fourth datanode in place of the paused
    // one, with the acknowledged bytes copied to it.
    put_through_a_failure(
        "stop",
        &[("client.replace_datanode_on_failure_policy", "ALWAYS")],
    );
}

/// Reads a file until it has `len` bytes (a reader of a file being written
/// sees what was hflushed).
fn wait_visible(cluster: &MiniCluster, path: &str, expected: &[u8]) {
    cluster.wait_until(
        &format!("{} flushed bytes visible in {path}", expected.len()),
        Duration::from_secs(20),
        || {
            let run = cluster.dfs(&["-cat", path]);
            run.code == 0 && run.stdout == expected
        },
    );
}

#[test]
fn killed_writer_after_hflush_loses_nothing_flushed() {
    let cluster = quick_cluster(3, MIB as u64, &[("namenode.lease_hard_limit_ms", "4000")]);
    let data = test_bytes(MIB + 300_000, 52);

    // Flushed mid-chunk, then on from the middle of that chunk and into a
    // second block; readers see each flush while the file is open.
    let mut writer = cluster.spawn_rdfs("dfs", &["-put", "-hflush", "-", "/flushed"]);
    feed(&mut writer, &data[..3000]);
    wait_visible(&cluster, "/flushed", &data[..3000]);
    feed(&mut writer, &data[3000..5000]);
    wait_visible(&cluster, "/flushed", &data[..5000]);
    feed(&mut writer, &data[5000..]);
    wait_visible(&cluster, "/flushed", &data);
    writer.kill().expect("kill the writer");
    let _ = writer.wait();
    assert!(
        cluster
            .block_on(cluster.client().is_under_construction("/flushed"))
            .expect("status"),
        "a killed writer leaves its file open"
    );
    let recovered = cluster.rdfs(
        "debug",
        &["recoverLease", "-path", "/flushed", "-retries", "6"],
    );
    assert!(
        recovered.code == 0
            && recovered
                .stdout()
                .contains("recoverLease SUCCEEDED on /flushed"),
        "recoverLease: {}\n{}",
        recovered.stdout(),
        recovered.stderr
    );
    let read = cluster.dfs(&["-cat", "/flushed"]);
    read.ok();
    assert!(read.stdout == data, "recovered file differs");
    let ls = cluster.dfs(&["-ls", "/flushed"]);
    assert!(
        ls.stdout().contains(&format!(" {} ", data.len())),
        "{}",
        ls.stdout()
    );

    // A second dead writer nobody recovers: the namenode closes its file
    // once the hard limit passes.
    let mut writer = cluster.spawn_rdfs("dfs", &["-put", "-hsync", "-", "/abandoned"]);
    feed(&mut writer, &data[..70_000]);
    wait_visible(&cluster, "/abandoned", &data[..70_000]);
    writer.kill().expect("kill the writer");
    let _ = writer.wait();
    cluster.wait_until(
        "the namenode to close the abandoned file",
        Duration::from_secs(30),
        || {
            !cluster
                .block_on(cluster.client().is_under_construction("/abandoned"))
                .unwrap_or(true)
        },
    );
    let read = cluster.dfs(&["-cat", "/abandoned"]);
    read.ok();
    assert!(
        read.stdout == data[..70_000],
        "hard-limit recovery lost bytes"
    );

    // Recovering a file that is closed, or missing.
    let again = cluster.rdfs("debug", &["recoverLease", "-path", "/flushed"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let missing = cluster.rdfs("debug", &["recoverLease", "-path", "/nope"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("recoverLease got exception"),
        "{}",
        missing.stderr
    );
}

#[test]
fn append_and_truncate_round_trip() {
    let cluster = quick_cluster(3, MIB as u64, &[]);
    let local = cluster.path("local");
    std::fs::create_dir_all(&local).expect("local dir");
    let mut expected = test_bytes(MIB + 300_000, 53);
    cluster
        .dfs(&[
            "-put",
            write_local(&local, "base", &expected).to_str().unwrap(),
            "/a",
        ])
        .ok();

    // Appends continue the partial last chunk (1_348_576 is 480 bytes into
    // a chunk), then a tiny one, then stdin.
    for (i, len) in [5000usize, 7, 123_456].into_iter().enumerate() {
        let more = test_bytes(len, 60 + i as u64);
        let run = if i == 2 {
            cluster.rdfs_with_stdin("dfs", &["-appendToFile", "-", "/a"], Some(&more))
        } else {
            let file = write_local(&local, &format!("more{i}"), &more);
            cluster.dfs(&["-appendToFile", file.to_str().unwrap(), "/a"])
        };
        run.ok();
        expected.extend_from_slice(&more);
        assert!(
            cluster.dfs(&["-cat", "/a"]).stdout == expected,
            "after append {i}"
        );
    }

    // A file ending on a block boundary gets a new block.
    let whole = test_bytes(MIB, 54);
    cluster
        .dfs(&[
            "-put",
            write_local(&local, "whole", &whole).to_str().unwrap(),
            "/b",
        ])
        .ok();
    cluster
        .rdfs_with_stdin("dfs", &["-appendToFile", "-", "/b"], Some(b"tail"))
        .ok();
    let mut whole_tail = whole.clone();
    whole_tail.extend_from_slice(b"tail");
    assert!(cluster.dfs(&["-cat", "/b"]).stdout == whole_tail);
    assert_eq!(cluster.block_ids("/b").len(), 2);

    // A missing destination is created.
    cluster
        .rdfs_with_stdin("dfs", &["-appendToFile", "-", "/c"], Some(b"new"))
        .ok();
    assert_eq!(cluster.dfs(&["-cat", "/c"]).stdout, b"new");

    // Truncate in the middle of a block waits for the replicas to be cut.
    let cut = MIB + 1000;
    let run = cluster.dfs(&["-truncate", "-w", &cut.to_string(), "/a"]);
    run.ok();
    assert!(
        run.stdout()
            .contains(&format!("Truncated /a to length: {cut}")),
        "{}",
        run.stdout()
    );
    expected.truncate(cut);
    assert!(
        cluster.dfs(&["-cat", "/a"]).stdout == expected,
        "after truncate"
    );
    // ... and the file can be appended to again.
    cluster
        .rdfs_with_stdin("dfs", &["-appendToFile", "-", "/a"], Some(b"again"))
        .ok();
    expected.extend_from_slice(b"again");
    assert!(
        cluster.dfs(&["-cat", "/a"]).stdout == expected,
        "append after truncate"
    );

    // On a block boundary the cut is immediate.
    let run = cluster.dfs(&["-truncate", &MIB.to_string(), "/a"]);
    run.ok();
    assert!(
        run.stdout()
            .contains(&format!("Truncated /a to length: {MIB}")),
        "{}",
        run.stdout()
    );
    expected.truncate(MIB);
    assert!(cluster.dfs(&["-cat", "/a"]).stdout == expected);
    assert_eq!(cluster.block_ids("/a").len(), 1);
    cluster.dfs(&["-truncate", "-w", "0", "/a"]).ok();
    assert!(cluster.dfs(&["-cat", "/a"]).stdout.is_empty());

    // Every replica on disk of /b's last block holds its bytes.
    let located = cluster
        .block_on(cluster.client().get_block_locations("/b", 0, u64::MAX))
        .expect("locations");
    let last = located.blocks.last().expect("a block");
    cluster.wait_until("3 identical replicas", Duration::from_secs(20), || {
        let files = cluster.replica_files(last.block.block_id);
        files.len() == 3
            && files
                .iter()
                .all(|(_, f, _)| std::fs::read(f).is_ok_and(|b| b == b"tail"))
    });

    // Bad input.
    cluster.dfs(&["-mkdir", "/dir"]).ok();
    let run = cluster.rdfs_with_stdin("dfs", &["-appendToFile", "-", "/dir"], Some(b"x"));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Is a directory"), "{}", run.stderr);
    let run = cluster.dfs(&["-truncate", "99999", "/c"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "Cannot truncate to a larger file size. Current size: 3, truncate size: 99999."
        ),
        "{}",
        run.stderr
    );
    let run = cluster.dfs(&["-truncate", "abc", "/c"]);
    assert_eq!(run.code, 255);
    assert!(run.stderr.contains("Illegal length"), "{}", run.stderr);
    let run = cluster.dfs(&["-appendToFile", "/no/such/local", "/c"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("No such file or directory"),
        "{}",
        run.stderr
    );

    // A file open for writing cannot be appended to or truncated.
    let mut writer = cluster.spawn_rdfs("dfs", &["-put", "-hflush", "-", "/open"]);
    feed(&mut writer, b"being written");
    wait_visible(&cluster, "/open", b"being written");
    let run = cluster.rdfs_with_stdin("dfs", &["-appendToFile", "-", "/open"], Some(b"x"));
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("AlreadyBeingCreated")
            || run.stderr.contains("is currently owned by")
            || run.stderr.contains("lease recovery is in progress"),
        "{}",
        run.stderr
    );
    let run = cluster.dfs(&["-truncate", "1", "/open"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    finish(writer, "the open writer");
    assert_eq!(cluster.dfs(&["-cat", "/open"]).stdout, b"being written");
}

#[test]
fn aborted_transfers_leave_nothing_behind() {
    let mut cluster = quick_cluster(4, MIB as u64, &[]);
    // Let the cluster settle before taking the baseline.
    cluster.dfs(&["-mkdir", "/leak"]).ok();
    cluster
        .rdfs_with_stdin(
            "dfs",
            &["-put", "-", "/leak/warmup"],
            Some(&test_bytes(3 * MIB, 1)),
        )
        .ok();
    std::thread::sleep(Duration::from_secs(1));
    let survivors = [0usize, 1, 2];
    let baseline: Vec<_> = survivors
        .iter()
        .map(|&dn| proc_usage(cluster.datanode(dn).pid()))
        .collect();

    let chunk = test_bytes(300_000, 2);
    let mut aborted = 0;
    let mut round = 0;
    while aborted < 200 {
        // Every fifth round the fourth datanode dies under the writers too.
        let kill_datanode = round % 5 == 4;
        let writers: Vec<Child> = (0..10)
            .map(|i| {
                let name = format!("/leak/r{round}-{i}");
                let mut writer = cluster.spawn_rdfs("dfs", &["-put", "-d", "-", &name]);
                feed(&mut writer, &chunk);
                feed(&mut writer, &chunk);
                feed(&mut writer, &chunk);
                feed(&mut writer, &chunk);
                writer
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        if kill_datanode {
            cluster.kill_datanode(3);
        }
        for mut writer in writers {
            let _ = writer.kill();
            let _ = writer.wait();
            aborted += 1;
        }
        if kill_datanode {
            cluster.start_datanode(3);
        }
        round += 1;
    }

    // Sessions with a vanished peer end within the socket timeout (3 s)
    // plus the pipeline extensions.
    let mut last = Vec::new();
    cluster.wait_until(
        "datanodes back at their baseline of descriptors and connections",
        Duration::from_secs(30),
        || {
            last = survivors
                .iter()
                .map(|&dn| proc_usage(cluster.datanode(dn).pid()))
                .collect();
            last.iter().zip(&baseline).all(|(now, base)| {
                now.fds <= base.fds + 8 && now.tcp <= base.tcp + 4 && now.close_wait == 0
            })
        },
    );
    cluster.wait_until("no transfer in progress", Duration::from_secs(10), || {
        let report = cluster.rdfs("dfsadmin", &["-report"]).stdout();
        report
            .lines()
            .filter(|l| l.starts_with("Xceivers: "))
            .all(|l| l == "Xceivers: 0")
    });
    for ((dn, base), now) in survivors.iter().zip(&baseline).zip(&last) {
        eprintln!(
            "datanode {dn} after {aborted} aborted transfers: fds {} -> {}, tcp {} -> {}, threads {} -> {}, rss {} -> {} KiB",
            base.fds,
            now.fds,
            base.tcp,
            now.tcp,
            base.threads,
            now.threads,
            base.rss_kb,
            now.rss_kb
        );
        assert!(
            now.rss_kb < base.rss_kb + 128 * 1024,
            "datanode {dn} memory grew from {} to {} KiB",
            base.rss_kb,
            now.rss_kb
        );
    }
    // The cluster still writes and reads.
    let data = test_bytes(2 * MIB + 7, 3);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/leak/after"], Some(&data))
        .ok();
    assert!(cluster.dfs(&["-cat", "/leak/after"]).stdout == data);
}

/// A client that breaks the protocol: packets out of order, and a write of
/// a block whose replica there is newer. The datanode refuses with a clear
/// error and keeps what it acknowledged.
#[test]
fn datanode_refuses_bad_packets_and_stale_writes() {
    use rdfs_proto as pb;
    use rdfs_proto::data_transfer_client::DataTransferClient;
    use rdfs_proto::write_block_frame::Frame;
    use rdfs_proto::write_block_reply::Reply;

    // Hand-made pipeline frames, for the pipeline's own checks: block
    // tokens (tested in `block_tokens`) would refuse them first.
    let cluster = quick_cluster(
        1,
        MIB as u64,
        &[
            ("dfs.replication", "1"),
            ("security.block_access_token_enable", "false"),
        ],
    );
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/real"], Some(b"real bytes"))
        .ok();
    let real = cluster
        .block_on(cluster.client().get_block_locations("/real", 0, u64::MAX))
        .expect("locations")
        .blocks
        .remove(0)
        .block;
    let addr = cluster.datanode_addr(0);
    let packet = |seqno: i64, offset: u64, data: &[u8]| pb::WriteBlockFrame {
        frame: Some(Frame::Packet(pb::Packet {
            seqno,
            offset_in_block: offset,
            last_packet_in_block: false,
            sync_block: false,
            data: data.to_vec().into(),
            checksums: rdfs_common::checksum::DataChecksum::crc32c(512)
                .compute(data)
                .into(),
        })),
    };
    let header =
        |block: pb::ExtendedBlock, stage: pb::PipelineStage, latest: u64| pb::WriteBlockFrame {
            frame: Some(Frame::Header(pb::WriteBlockHeader {
                block: Some(block),
                stage: stage as i32,
                checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
                bytes_per_checksum: 512,
                latest_generation_stamp: latest,
                block_size: MIB as u64,
                client_name: "rogue".into(),
                ..Default::default()
            })),
        };
    let session = |frames: Vec<pb::WriteBlockFrame>| -> Vec<pb::WriteBlockReply> {
        cluster.block_on(async {
            let mut dn = DataTransferClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            for frame in frames {
                tx.send(frame).await.expect("queue");
            }
            let mut replies = dn
                .write_block(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("write_block")
                .into_inner();
            let mut out = Vec::new();
            while let Ok(Ok(Some(reply))) =
                tokio::time::timeout(Duration::from_secs(10), replies.message()).await
            {
                let failed = match &reply.reply {
                    Some(Reply::Setup(s)) => s.status != pb::TransferStatus::Success as i32,
                    Some(Reply::Ack(a)) => a.replies.iter().any(|s| *s != 0),
                    None => true,
                };
                out.push(reply);
                if failed {
                    break;
                }
            }
            drop(tx);
            out
        })
    };

    // Packets 0 and 1 are fine; then 5 arrives where 2 belongs.
    let fresh = pb::ExtendedBlock {
        pool_id: real.pool_id.clone(),
        block_id: real.block_id + 1_000_000,
        generation_stamp: real.generation_stamp,
        num_bytes: 0,
    };
    let first = test_bytes(1024, 7);
    let replies = session(vec![
        header(fresh.clone(), pb::PipelineStage::SetupCreate, 0),
        packet(0, 0, &first[..512]),
        packet(1, 512, &first[512..]),
        packet(5, 1024, &first[..512]),
    ]);
    let acks: Vec<&pb::PipelineAck> = replies
        .iter()
        .filter_map(|r| match &r.reply {
            Some(Reply::Ack(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert!(acks.len() >= 3, "{replies:?}");
    assert!(acks[..2].iter().all(|a| a.replies == vec![0]), "{acks:?}");
    let refused = acks.last().expect("an error ack");
    assert!(refused.replies[0] != 0, "{refused:?}");
    assert!(
        refused.message.contains("out of order"),
        "{}",
        refused.message
    );
    // The acknowledged kilobyte is kept, unfinalized, for recovery.
    cluster.wait_until(
        "the acknowledged bytes kept",
        Duration::from_secs(10),
        || {
            cluster.rbw_replicas().iter().any(|(_, path, len)| {
                path.ends_with(format!("blk_{}", fresh.block_id))
                    && *len == 1024
                    && std::fs::read(path).is_ok_and(|b| b == first)
            })
        },
    );

    // An append to the real block naming an older generation stamp than
    // the replica's is refused at setup.
    let mut stale = pb::ExtendedBlock::from(&real);
    stale.generation_stamp -= 1;
    let replies = session(vec![header(
        stale,
        pb::PipelineStage::SetupAppend,
        real.generation_stamp + 100,
    )]);
    match replies.first().and_then(|r| r.reply.as_ref()) {
        Some(Reply::Setup(setup)) => {
            assert!(setup.status != 0, "{setup:?}");
            assert!(
                setup.message.to_lowercase().contains("stale")
                    || setup.message.contains("generation stamp"),
                "{}",
                setup.message
            );
        }
        other => panic!("expected a refused setup, got {other:?}"),
    }
    // ... and the real file is intact.
    assert_eq!(cluster.dfs(&["-cat", "/real"]).stdout, b"real bytes");
}
