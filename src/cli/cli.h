#ifndef SM_CLI_H
#define SM_CLI_H

struct cli_command {
	const char *name;
	const char *summary;
	/* argv[0] is the command name; returns the process exit status */
	int (*run)(int argc, char **argv);
};

#endif
