/* NULL-terminated string vectors (argv, envp, image config lists). */
#ifndef SM_BASE_STRV_H
#define SM_BASE_STRV_H

#include <stddef.h>

/* Frees each string and the vector; NULL is fine. */
void strv_free(char **v);
/* Strings before the NULL; 0 for a NULL vector. */
size_t strv_len(char *const *v);

#endif
