// Where the page finds the admin API and how it signs in. `make run` serves it as written:
// the API on the same origin, local claims. For a deployed API, set apiBase to the API URL
// (its CORS must allow this page's origin) and auth to {mode: "bearer", token: () => jwt,
// stepUp: (maxAge) => ...}: token() answers the signed-in user's access token (a promise is
// fine); the optional stepUp(maxAge) signs them in again and answers true once it did.
window.TENANT_KMS_ADMIN = {
  apiBase: "",
  tenantId: "acme",
  auth: {
    mode: "local-claims",
    // The dev-only X-Local-Claims header of the local gateway: no JWT is checked locally.
    // auth_time is each request's time unless signedInAt (epoch seconds) says when you signed in.
    claims: { sub: "admin@acme.example", scope: "tenant-kms/admin" },
  },
  // How often a running rewrap job is read again.
  pollMilliseconds: 1000,
};
