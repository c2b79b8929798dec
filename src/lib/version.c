/* The library's version: the build's, set by src/lib/meson.build. */
#include <supermachine.h>

const char *sm_version(void) { return SM_VERSION_STRING; }
