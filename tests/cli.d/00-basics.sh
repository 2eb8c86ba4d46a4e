# Basic command-line behaviour: help, unknown commands and flags.
expect_exit 0 help -- "$TOME" --help
expect_out 'exit codes' help-lists-exit-codes
expect_exit 1 no-command -- "$TOME"
expect_exit 1 unknown-command -- "$TOME" frobnicate
expect_err "unknown command 'frobnicate'" unknown-command-message
