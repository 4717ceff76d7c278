"""One module per command of ./reproduce.sh: NAME, HELP (its line in --help), `add_arguments(parser)` and
`run(args)`, which returns the exit status; core.tools.cli builds the parser from them. verify's module is
core/tools/verify.py."""
