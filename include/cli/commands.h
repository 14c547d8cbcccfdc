/* commands.h: the entry point of every settrain subcommand, which main.c
 * dispatches to. Each takes the subcommand's own argv (argv[0] is the
 * command's name), parses its options, does the work and returns the
 * process exit code (0 done, 1 a failure the message names, 2 a bad
 * command line; train also 3 for a run stopped by a signal). */
#ifndef ST_COMMANDS_H
#define ST_COMMANDS_H

#ifdef __cplusplus
extern "C" {
#endif

/* `settrain train ...`: src/cli/train_cli.c (options) -> src/train/train.c. */
int cmd_train(int argc, char **argv);
/* `settrain eval|predict|features ...`: src/cli/cmd_model.c. */
int cmd_model(int argc, char **argv);
/* `settrain score ...`: src/cli/score.c (score_cli on stdout and stderr). */
int cmd_score(int argc, char **argv);
/* `settrain prepare fmnist|mat ...`: src/data/prepare.c. */
int cmd_prepare(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
