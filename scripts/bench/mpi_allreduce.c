/* mpi_allreduce.c -- the C side of scripts/bench/mpi.sh's allreduce rows:
 * MPI_Allreduce (sum) of N doubles, and of one double, on every rank.
 *
 *   mpiexec -n 2 mpi_allreduce N ROUNDS
 *
 * Rank 0 prints "c allreduce N seconds_per_call" and "c allreduce 1 ..."
 * (ROUNDS calls of N, 10 x ROUNDS of one). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int n = argc > 1 ? atoi(argv[1]) : 1048576;
  int rounds = argc > 2 ? atoi(argv[2]) : 10;
  double *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
  if (!a || !b) MPI_Abort(MPI_COMM_WORLD, 1);
  for (int i = 0; i < n; i++) a[i] = rank + 1;
  MPI_Allreduce(a, b, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); /* warm-up */
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  for (int i = 0; i < rounds; i++) MPI_Allreduce(a, b, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double ta = (MPI_Wtime() - t0) / rounds;
  double x = rank, y = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  t0 = MPI_Wtime();
  for (int i = 0; i < 10 * rounds; i++) MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double ts = (MPI_Wtime() - t0) / (10 * rounds);
  if (rank == 0) printf("c allreduce %d %.9f\nc allreduce 1 %.9f\n", n, ta, ts);
  free(a);
  free(b);
  MPI_Finalize();
  return 0;
}
