/* swap.c: the swap_refresh service (being written). */
#include "svc.h"
void svc_swap_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  MvSvc s;
  if (svc_open(&s, c, d, o, r, 1) == 0) svc_fail(&s, "swap_refresh is not implemented yet", NULL, NULL, NULL);
  svc_close(&s);
}
