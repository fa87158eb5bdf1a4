"""The exit statuses of every command (README, "Exit statuses")."""

EXIT_OK = 0
EXIT_FAILED = 1  # run / resume: some trials errored; submit --wait: the job failed
EXIT_USAGE = 2  # bad input: a NinsweepError, printed as one line
EXIT_STORAGE_FULL = 75  # run / resume: the storage filled up (EX_TEMPFAIL): free space, resume
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended
