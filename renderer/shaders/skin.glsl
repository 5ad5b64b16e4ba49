// Skinning of one vertex: BDEF1/2/4 linear blend, SDEF (MMD's spherical deform),
// QDEF (dual-quaternion blend). Bone skinning matrices come from a storage buffer.

layout(std430, binding = 0) readonly buffer Bones { mat4 bones[]; };

in vec3 in_position;
in vec3 in_normal;
in ivec4 in_bones;
in vec4 in_weights;
in vec3 in_sdef_c;
in vec3 in_sdef_r0;  // (C + R0') / 2, precomputed with the weight-corrected R0'
in vec3 in_sdef_r1;
in int in_deform;
in vec3 in_morph;  // vertex-morph offset, applied before skinning

const int SDEF = 3;
const int QDEF = 4;

vec4 quat_from_matrix(mat3 m) {
    // m[column][row]; the rotation part of a skinning matrix.
    float trace = m[0][0] + m[1][1] + m[2][2];
    if (trace > 0.0) {
        float s = sqrt(trace + 1.0) * 2.0;
        return vec4(m[1][2] - m[2][1], m[2][0] - m[0][2], m[0][1] - m[1][0], 0.25 * s * s) / s;
    }
    if (m[0][0] > m[1][1] && m[0][0] > m[2][2]) {
        float s = sqrt(1.0 + m[0][0] - m[1][1] - m[2][2]) * 2.0;
        return vec4(0.25 * s * s, m[0][1] + m[1][0], m[2][0] + m[0][2], m[1][2] - m[2][1]) / s;
    }
    if (m[1][1] > m[2][2]) {
        float s = sqrt(1.0 + m[1][1] - m[0][0] - m[2][2]) * 2.0;
        return vec4(m[0][1] + m[1][0], 0.25 * s * s, m[1][2] + m[2][1], m[2][0] - m[0][2]) / s;
    }
    float s = sqrt(1.0 + m[2][2] - m[0][0] - m[1][1]) * 2.0;
    return vec4(m[2][0] + m[0][2], m[1][2] + m[2][1], 0.25 * s * s, m[0][1] - m[1][0]) / s;
}

vec3 quat_rotate(vec4 q, vec3 v) {
    return v + 2.0 * cross(q.xyz, cross(q.xyz, v) + q.w * v);
}

vec4 quat_slerp(vec4 a, vec4 b, float t) {
    float c = dot(a, b);
    if (c < 0.0) { b = -b; c = -c; }
    if (c > 0.9995) return normalize(mix(a, b, t));
    float angle = acos(c);
    return (sin((1.0 - t) * angle) * a + sin(t * angle) * b) / sin(angle);
}

void skin_linear(vec3 p, out vec3 position, out vec3 normal) {
    mat4 m = mat4(0.0);
    for (int i = 0; i < 4; ++i) {
        if (in_bones[i] >= 0) m += in_weights[i] * bones[in_bones[i]];
    }
    position = (m * vec4(p, 1.0)).xyz;
    normal = mat3(m) * in_normal;
}

void skin_sdef(vec3 p, out vec3 position, out vec3 normal) {
    mat4 m0 = bones[in_bones[0]];
    mat4 m1 = bones[in_bones[1]];
    float w0 = in_weights[0];
    float w1 = 1.0 - w0;
    vec4 q = quat_slerp(quat_from_matrix(mat3(m0)), quat_from_matrix(mat3(m1)), w1);
    position = quat_rotate(q, p - in_sdef_c)
             + (m0 * vec4(in_sdef_r0, 1.0)).xyz * w0 + (m1 * vec4(in_sdef_r1, 1.0)).xyz * w1;
    normal = quat_rotate(q, in_normal);
}

void skin_qdef(vec3 p, out vec3 position, out vec3 normal) {
    vec4 real = vec4(0.0);
    vec4 dual = vec4(0.0);
    vec4 first = quat_from_matrix(mat3(bones[in_bones[0]]));
    for (int i = 0; i < 4; ++i) {
        if (in_bones[i] < 0) continue;
        mat4 m = bones[in_bones[i]];
        vec4 q = quat_from_matrix(mat3(m));
        if (dot(q, first) < 0.0) q = -q;
        vec3 t = m[3].xyz;
        vec4 d = 0.5 * vec4(q.w * t + cross(t, q.xyz), -dot(t, q.xyz));
        real += in_weights[i] * q;
        dual += in_weights[i] * d;
    }
    float norm = length(real);
    real /= norm;
    dual /= norm;
    vec3 translation = 2.0 * (real.w * dual.xyz - dual.w * real.xyz + cross(real.xyz, dual.xyz));
    position = quat_rotate(real, p) + translation;
    normal = quat_rotate(real, in_normal);
}

void skin(out vec3 position, out vec3 normal) {
    vec3 p = in_position + in_morph;
    if (in_deform == SDEF) skin_sdef(p, position, normal);
    else if (in_deform == QDEF) skin_qdef(p, position, normal);
    else skin_linear(p, position, normal);
    normal = normalize(normal);
}
