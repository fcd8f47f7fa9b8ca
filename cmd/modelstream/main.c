/*
 * main.c - the `modelstream` command: dispatches to one file per subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "modelstream.h"

#include "cli.h"

static const char usage[] =
    "Usage: modelstream COMMAND [OPTIONS]\n"
    "\n"
    "Streams safetensors model weights from storage into memory, fast.\n"
    "\n"
    "Commands:\n"
    "  inspect PATH [--json]     show a file's tensor table, dtypes, sizes and metadata\n"
    "  stream PATH... [OPTIONS]  stream tensors into host memory; report throughput\n"
    "  ls URL [--recursive]      list the objects under an s3:// or gs:// prefix\n"
    "  exists LOCATION           say whether an object, prefix or path exists\n"
    "  push LOCAL URL            upload a file or a model directory (multipart, parallel)\n"
    "  doctor LOCATION           show the endpoint, region, addressing and credential\n"
    "                            source a location resolves to, and why; then try it\n"
    "  fetch SOURCE... --cache DIR  fill the node cache (the init container's job)\n"
    "  cache ls|gc|verify|rm     look after the node cache\n"
    "  serve --cache DIR [SOURCE...]  a native sidecar: fetch, then keep serving /healthz,\n"
    "                            /readyz, /progress and /metrics\n"
    "  wait URL [--timeout S]    block until a modelstream server's /readyz says 200\n"
    "  help [COMMAND]            show help for a command\n"
    "  version                   print the version\n"
    "\n"
    "Run 'modelstream COMMAND --help' for a command's options.\n"
    "\n";

typedef struct {
	const char *name;
	int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"inspect", cmd_inspect}, {"stream", cmd_stream}, {"ls", cmd_ls},       {"exists", cmd_exists},
    {"push", cmd_push},       {"doctor", cmd_doctor}, {"fetch", cmd_fetch}, {"cache", cmd_cache},
    {"wait", cmd_wait},       {"serve", cmd_serve},
};

static int print_usage(FILE *out)
{
	fputs(usage, out);
	fputs(cli_exit_codes_help, out);
	return out == stdout ? EXIT_OK : EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : NULL;

	if (name == NULL)
		return print_usage(stderr);
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		return print_usage(stdout);
	if (strcmp(name, "help") == 0) {
		if (argc < 3)
			return print_usage(stdout);
		name = argv[2];
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
			if (strcmp(commands[i].name, name) == 0) {
				char *help_argv[] = {argv[2], "--help", NULL};

				return commands[i].run(2, help_argv);
			}
		}
		return cli_usage_error("unknown command '%s' (see 'modelstream --help')", name);
	}
	if (strcmp(name, "version") == 0 || strcmp(name, "--version") == 0) {
		printf("modelstream %s (libmodelstream %s)\n", MS_VERSION_STRING, ms_version());
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	return cli_usage_error("unknown command '%s' (see 'modelstream --help')", name);
}
