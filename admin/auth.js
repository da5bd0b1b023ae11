// The admin API's credentials, one function per way of signing in: headers() answers the
// headers every request carries. Local claims stand in for a verified JWT; a deployed API
// takes the bearer token its JWT authorizer checks.
(function () {
  const modes = {
    "local-claims": async (auth, tenantId) => {
      // Step-up routes need a recent login: locally, every request is one.
      const claims = { ...auth.claims, tenant_id: tenantId, auth_time: Math.floor(Date.now() / 1000) };
      return { "X-Local-Claims": JSON.stringify(claims) };
    },
    bearer: async (auth) => ({ Authorization: `Bearer ${await auth.token()}` }),
  };

  window.TenantKmsAuth = {
    headers(auth, tenantId) {
      const mode = modes[auth.mode];
      if (!mode) throw new Error(`unknown auth mode ${auth.mode}`);
      return mode(auth, tenantId);
    },
    describe(auth, tenantId) {
      return auth.mode === "local-claims" ? `${auth.claims.sub} (local claims) · tenant ${tenantId}` : `tenant ${tenantId}`;
    },
  };
})();
