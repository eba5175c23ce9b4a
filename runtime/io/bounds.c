/* bounds.c -- see bounds.h. */
#include "bounds.h"

#include <pthread.h>
#include <stdlib.h>

static size_t max_string = PX_IO_MAX_STRING;
static pthread_once_t max_once = PTHREAD_ONCE_INIT;

static void read_max(void) {
  const char *s = getenv("PARX_TEST_MAX_STRING");
  if (s == NULL || *s == 0) return;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end == 0 && v > 0 && v < PX_IO_MAX_STRING) max_string = (size_t)v;
}

size_t px_io_max_string(void) {
  pthread_once(&max_once, read_max);
  return max_string;
}
