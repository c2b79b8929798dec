#ifndef SM_CLI_H
#define SM_CLI_H

struct cli_command {
	const char *name;
	const char *summary;
	/* argv[0] is the command name; returns the process exit status */
	int (*run)(int argc, char **argv);
};

/* Subcommands, one file each (src/cli/NAME.c). */
int cmd_pull(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_system(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_port(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_cp(int argc, char **argv);

#endif
