/* score.h: `settrain score`, the paper's comprehensive score (its equation 1).
 * For a run with time T and accuracy A against a baseline (T_base, A_base:
 * the m = 1 run of the same configuration):
 *   R_r = (T_base - T) / T_base          time reduction rate
 *   A_r = (A_base - A) / A_base          accuracy reduction rate
 *   S   = w_R * R_r + w_A * (1 - A_r)    default w_R = 0.1, w_A = 0.9
 * Runs come as TIME:ACCURACY pairs or as run folders whose run.json holds
 * "total_wall_s" (T) and "final_test_acc" (A). */
#ifndef ST_SCORE_H
#define ST_SCORE_H

#include <stdio.h>

#define SCORE_DEFAULT_WR 0.1
#define SCORE_DEFAULT_WA 0.9

/* The formula above. No checks: the caller ensures t_base > 0, a_base > 0. */
void score_compute(double t_base, double a_base, double t, double a, double w_r, double w_a,
                   double *rr, double *ar, double *s);

/* Parse "TIME:ACCURACY" (TIME > 0 seconds, ACCURACY a fraction in [0, 1]).
 * Returns 0, or -1 with err (ST_ERRLEN bytes) naming the argument. */
int score_parse_pair(const char *arg, double *t, double *a, char *err);

/* Parse "W_R,W_A": two non-negative finite numbers. Returns 0 or -1 with err. */
int score_parse_weights(const char *arg, double *w_r, double *w_a, char *err);

/* Find the top-level member `key` of the JSON object in `json` (nested
 * objects, arrays and string contents are skipped) and read it as a number.
 * Returns 0 when found and numeric, -1 when the member is absent (or the text
 * is not a JSON object), -2 when it is present but not a finite number. */
int score_json_number(const char *json, const char *key, double *out);

/* Read DIR/run.json: T = total_wall_s, A = final_test_acc, with the same range
 * checks as score_parse_pair. Returns 0, or -1 with err naming the file. */
int score_read_run_dir(const char *dir, double *t, double *a, char *err);

/* The command with its output streams given (the tests pass tmpfile()s):
 * argv[0] is "score". Table or CSV on out; on failure one line
 * "settrain: error: ..." on errf. Returns the exit code: 0, 1 (a run cannot be
 * read or is out of range, or no run given), 2 (options cannot be parsed). */
int score_cli(int argc, char **argv, FILE *out, FILE *errf);

#endif
