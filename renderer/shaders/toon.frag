// MMD's own look: the surface colour (material, texture, sphere map) under MMD's default
// light, the toon ramp, specular.

uniform sampler2D toon_texture;

in vec3 v_normal;
in vec2 v_uv;
out vec4 color;

void main() {
    Material m = materials[material];
    vec3 n = facing_normal(v_normal);
    vec4 base = surface_colour(m, v_uv, n);
    if (m.maps.z > 0.5) {
        float lit = dot(n, LIGHT_TOWARDS);
        base.rgb *= (texture(toon_texture, vec2(0.5, 0.5 - 0.5 * lit)) * m.toon_mul + m.toon_add).rgb;
    }
    base.rgb += m.specular.rgb * MMD_LIGHT * specular_term(m, n);
    if (base.a < MIN_ALPHA) discard;
    color = vec4(clamp(base.rgb, 0.0, 1.0), base.a);
}
