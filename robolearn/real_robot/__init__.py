"""robolearn.real_robot: the path from a trained policy to an arm (`robolearn serve`).

    driver (arm) ◄── safety filter ◄── adapter (joint / eef-delta + diff. IK) ◄── scheduler ◄── policy worker
         │                                                                         ▲   (thread, process,
         └── read_state ──► observation history (timestamps) ──────────────────────┘    or remote server)

- `config.py`     robot TOML -> validated `RobotConfig` (limits, workspace, rates, scheduling, action space)
- `safety.py`     joint position/velocity/acceleration limits, per-tick step cap, workspace box, NaN rejection
- scheduling    `robolearn/policies/scheduling.py`, shared with sim eval: chunks -> one action per slot (receding, ensemble, rtc)
- `adapter.py`    policy action -> joint target (joint targets, or robosuite OSC_POSE deltas via differential IK)
- `watchdog.py`   stale observation / inference deadline / driver silent / worker dead / e-stop -> hold or stop
- `daemon.py`     the fixed-rate loop on absolute `time.monotonic` deadlines; `tick(now)` is one cycle
- `worker.py`     asynchronous inference; the real-time-chunking hook (`prefix`, `prefix_len`)
- `driver.py`     the Driver protocol and registry; `drivers/sim.py` (MuJoCo arm process), `drivers/fake.py`,
                  `drivers/stepped.py` (the sim arm in lockstep with a simulated clock, for fast synchronous runs)
- `record.py`     record what the daemon commands as store episodes (demos on the arm that will run the policy)
- `lift.py`       lift episodes through the daemon (real time or stepped): success, limit checks, demo recording
- `remote.py`     ZeroMQ policy server/client (JSON header + raw array bytes, token off loopback; carries the goal)
- `checkpoint.py` load a checkpoint for the daemon or the policy server; the goal modalities it takes
- `control.py`    e-stop / re-arm / instruction socket and signals; `events.py` JSON-lines event log

Stand-in policies (toy reach, joint targets, scripted lifts) live with the tests: tests/real_robot/doubles.py.
"""
